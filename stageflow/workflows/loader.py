"""Template files (YAML or TOML) to ``WorkflowSpec``, with every problem located by line.

YAML is composed into nodes first (``yaml.SafeLoader``), so we can map each document path such
as ``("stages", 2, "needs", 0)`` to its line and see duplicate keys, which PyYAML would
otherwise drop silently; the nodes are then constructed with the safe constructor. TOML goes
through ``tomllib`` and its lines are found by scanning the table headers and keys.
Pydantic errors become ``Problem`` s with file, line, stage id and dotted path, and a loaded
spec is then checked as a whole by ``stageflow.workflows.validate.check_spec``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from stageflow.errors import Problem, SpecErrors
from stageflow.workflows.locations import DocPath, LineMap, dotted, suggest
from stageflow.workflows.spec import (
    Approval,
    Escalation,
    InputSpec,
    Limits,
    OnFailure,
    PlanRules,
    ReworkRule,
    StageSpec,
    WorkflowSpec,
)
from stageflow.workflows.validate import check_spec

Format = Literal["yaml", "toml"]
Finding = tuple[DocPath, int | None, str]  # path, line (None: look it up), message
_MERGE_TAG = "tag:yaml.org,2002:merge"


# libyaml's loader when PyYAML was built with it: same nodes and marks, about 8x faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_template_file(
    path: Path, *, check: bool = True, agent_names: Collection[str] | None = None
) -> WorkflowSpec:
    """Load and check one template file (``.toml`` is TOML, anything else YAML).

    Raises ``SpecErrors`` listing every problem found; each names ``str(path)`` as its file.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecErrors([Problem(f"not UTF-8 text: {exc.reason}", file=source)]) from exc
    except OSError as exc:
        raise SpecErrors(
            [Problem(f"cannot read file: {exc.strerror or exc}", file=source)]
        ) from exc
    fmt: Format = "toml" if path.suffix.lower() == ".toml" else "yaml"
    return load_template_text(text, source=source, fmt=fmt, check=check, agent_names=agent_names)


def load_template_text(
    text: str,
    *,
    source: str,
    fmt: Format = "yaml",
    check: bool = True,
    agent_names: Collection[str] | None = None,
) -> WorkflowSpec:
    """Load a template from text; ``source`` names it in problems and becomes ``spec.source``.

    With ``check=False`` only the structure is validated (no cross-stage checks).
    Raises ``SpecErrors`` listing every problem found.
    """
    if fmt == "toml":
        data, lines, found = _parse_toml(text, source)
    else:
        data, lines, found = _parse_yaml(text, source)
    if data is None:
        raise SpecErrors([Problem("the template is empty", source)])
    if not isinstance(data, dict):
        message = f"a template must be a mapping, got {_kind(data)}"
        raise SpecErrors([Problem(message, source, lines.line(()))])
    data, stripped = _strip_internal(data)
    found += stripped
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        found += [(tuple(e["loc"]), None, _message(e)) for e in exc.errors(include_url=False)]
        raise SpecErrors(_by_line([_locate(f, data, lines, source) for f in found])) from None
    problems = [_locate(f, data, lines, source) for f in found]
    stages = [
        s.model_copy(update={"line": lines.line(("stages", i))}) for i, s in enumerate(spec.stages)
    ]
    spec = spec.model_copy(update={"stages": stages, "source": source})
    if check:
        problems += check_spec(spec, agent_names=agent_names, lines=lines)
    if problems:
        raise SpecErrors(_by_line(problems))
    return spec


def validate_files(
    paths: Sequence[Path], *, agent_names: Collection[str] | None = None
) -> list[Problem]:
    """Load and check each file; problems of all files together. Never raises for bad files."""
    problems: list[Problem] = []
    for path in paths:
        try:
            load_template_file(path, agent_names=agent_names)
        except SpecErrors as exc:
            problems.extend(exc.problems)
    return problems


def _by_line(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)  # stable: ties keep their order


def _locate(finding: Finding, data: dict[str, Any], lines: LineMap, source: str) -> Problem:
    """A finding as a ``Problem`` with its line, the id of its stage and its dotted path."""
    path, line, message = finding
    stage = None
    if len(path) >= 2 and path[0] == "stages" and isinstance(path[1], int):
        stages = data.get("stages")
        entry = stages[path[1]] if isinstance(stages, list) and path[1] < len(stages) else None
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            stage = entry["id"]
    line = lines.line(path) if line is None else line
    return Problem(message, source, line, stage, dotted(path) or None)


# --- YAML ----------------------------------------------------------------------------------


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
    # libyaml words its errors differently; the pure loader gives the messages users see
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _parse_yaml(text: str, source: str) -> tuple[Any, LineMap, list[Finding]]:
    try:
        node = _compose(text)
        if node is None:
            return None, LineMap(), []
        lines, found = _walk(node)
        data = yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise SpecErrors([_yaml_problem(exc, source)]) from None
    except yaml.YAMLError as exc:
        raise SpecErrors([Problem(f"invalid YAML: {exc}", source)]) from None
    except RecursionError:
        raise SpecErrors([Problem("invalid YAML: nested too deeply", source)]) from None
    return data, lines, found


def _yaml_problem(exc: yaml.MarkedYAMLError, source: str) -> Problem:
    problem, context = exc.problem or "malformed document", exc.context
    mark, context_mark = exc.problem_mark or exc.context_mark, exc.context_mark
    if context and problem.startswith("but "):  # "expected a single document", "but found ..."
        problem, context = f"{context}, {problem}", None
    line = None
    if mark is not None:
        line = mark.line + 1
        problem += f" at column {mark.column + 1}"
    if context and context_mark is not None and context_mark.line + 1 != line:
        problem += f" ({context} from line {context_mark.line + 1})"
    return Problem(f"invalid YAML: {problem}", source, line)


def _walk(root: yaml.Node) -> tuple[LineMap, list[Finding]]:
    """Lines of every document path, duplicate keys and recursive aliases (no recursion)."""
    lines: dict[DocPath, int] = {(): root.start_mark.line + 1}
    found: list[Finding] = []
    seen: set[int] = set()  # an alias shares its anchor's node: walk each node once
    todo: list[tuple[DocPath, yaml.Node, frozenset[int]]] = [((), root, frozenset())]
    while todo:
        path, node, above = todo.pop()
        if id(node) in above:
            # an alias node *is* its anchor's node, so take the line of the key holding it
            holder = path[:-1] if path and isinstance(path[-1], int) else path
            found.append((path, lines.get(holder), "an alias may not contain itself"))
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[DocPath, yaml.Node]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                sub, line = (*path, key.value), key.start_mark.line + 1
                if key.value in first:
                    message = f"duplicate key '{key.value}' (first at line {first[key.value]})"
                    found.append((sub, line, message))
                    continue
                first[key.value] = line
                lines.setdefault(sub, line)
                children.append((sub, value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault((*path, i), item.start_mark.line + 1)
                children.append(((*path, i), item))
        inner = above | {id(node)}
        todo.extend((sub, child, inner) for sub, child in reversed(children))
    return LineMap(lines), found


# --- TOML ----------------------------------------------------------------------------------

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_ARRAY = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_TOML_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_TOML_KEY = re.compile(r"""^\s*([A-Za-z0-9_\-."' ]+?)\s*=""")


def _parse_toml(text: str, source: str) -> tuple[Any, LineMap, list[Finding]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line = str(exc), None
        m = _TOML_POS.search(message)
        if m:
            line = int(m.group(1))
            message = f"{message[: m.start()]} (column {m.group(2)})"
        raise SpecErrors([Problem(f"invalid TOML: {message}", source, line)]) from None
    return data, _toml_lines(text), []


def _toml_parts(name: str) -> list[str]:
    return [p.strip().strip("\"'") for p in name.split(".")]


def _toml_lines(text: str) -> LineMap:
    """Best-effort lines: table headers, ``[[array]]`` entries and the keys under them."""
    lines: dict[DocPath, int] = {(): 1}
    arrays: dict[DocPath, int] = {}  # array-of-tables path -> index of its latest entry
    current: DocPath = ()
    in_multiline = False

    def resolve(parts: list[str]) -> DocPath:
        path: DocPath = ()
        for part in parts:
            path = (*path, part)
            if path in arrays:
                path = (*path, arrays[path])
        return path

    for number, raw in enumerate(text.splitlines(), start=1):
        toggles = raw.count('"""') + raw.count("'''")
        if in_multiline:
            in_multiline = toggles % 2 == 0
            continue
        if (m := _TOML_ARRAY.match(raw)) is not None:
            parts = _toml_parts(m.group(1))
            base = (*resolve(parts[:-1]), parts[-1])
            arrays[base] = arrays.get(base, -1) + 1
            current = (*base, arrays[base])
            lines.setdefault(current, number)
        elif (m := _TOML_TABLE.match(raw)) is not None:
            current = resolve(_toml_parts(m.group(1)))
            lines.setdefault(current, number)
        elif (m := _TOML_KEY.match(raw)) is not None:
            lines.setdefault((*current, *_toml_parts(m.group(1))), number)
        in_multiline = toggles % 2 == 1
    return LineMap(lines)


# --- pydantic errors -----------------------------------------------------------------------


def _strip_internal(data: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """Drop fields only the loader may set (``line``, ``source``); coerce a numeric version."""
    found: list[Finding] = []
    out = dict(data)
    if "source" in out:
        del out["source"]
        found.append((("source",), None, "unknown field 'source'"))
    if isinstance(out.get("version"), int | float) and not isinstance(out["version"], bool):
        out["version"] = str(out["version"])  # ``version: 2`` is a YAML number
    stages = out.get("stages")
    if isinstance(stages, list):
        out["stages"] = [
            {k: v for k, v in stage.items() if k != "line"} if isinstance(stage, dict) else stage
            for stage in stages
        ]
        for i, stage in enumerate(stages):
            if isinstance(stage, dict) and "line" in stage:
                found.append((("stages", i, "line"), None, "unknown field 'line'"))
    return out, found


def _message(err: ErrorDetails) -> str:
    kind, value, loc = err["type"], err.get("input"), err["loc"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        model = _model_at(tuple(loc[:-1]))
        known = [f for f in model.model_fields if f not in ("line", "source")] if model else []
        return f"unknown field '{name}'{suggest(name, known)}"
    if kind == "missing":
        return f"missing required field '{loc[-1]}'"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {_kind(value)}"
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}"
    if kind == "string_type":
        return f"expected a string, got {_kind(value)}"
    if kind == "too_short" and tuple(loc) == ("stages",):
        return "a template needs at least one stage"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if (kind == "literal_error" or kind.endswith("_parsing")) and isinstance(value, str | int):
        msg += f"; got {value!r}"
    return msg


_MODELS_AT: dict[DocPath, type[BaseModel]] = {
    (): WorkflowSpec,
    ("limits",): Limits,
    ("inputs", "*"): InputSpec,
    ("stages", "*"): StageSpec,
    ("stages", "*", "on_failure"): OnFailure,
    ("stages", "*", "approval"): Approval,
    ("stages", "*", "plan"): PlanRules,
    ("stages", "*", "on_changes_requested"): ReworkRule,
    ("stages", "*", "escalate"): Escalation,
}


def _model_at(loc: DocPath) -> type[BaseModel] | None:
    """The model whose fields live at ``loc`` (for 'did you mean' on unknown fields)."""
    pattern = tuple("*" if n == 1 else part for n, part in enumerate(loc))
    return _MODELS_AT.get(pattern)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)
