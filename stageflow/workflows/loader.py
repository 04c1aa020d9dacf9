"""Template files (YAML or TOML) to ``WorkflowSpec``, with every problem located by line.

YAML is composed into nodes first (``yaml_compose``: bounded, no recursion), so we can map each
document path such as ``("stages", 2, "needs", 0)`` to its line and see duplicate keys, which
PyYAML would otherwise drop silently; the nodes are then constructed with the safe constructor.
TOML goes through ``toml_source``. Pydantic errors become ``Problem`` s with file, line, stage id
and dotted path, and the template is then checked as a whole by
``stageflow.workflows.validate.check_refs``: on the spec when it loaded, on the parsed data
(``refs.refs_from_data``) when its schema failed, so schema and cross-stage errors come out in
one pass. A file over a bound of ``bounds`` (size, nesting, aliases, stage count) is one
problem at its line.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from stageflow.errors import Problem, SpecErrors
from stageflow.workflows.bounds import (
    MAX_STAGES,
    LimitExceeded,
    check_text_size,
    read_bounded,
    unexpected_problem,
)
from stageflow.workflows.locations import DocPath, LineMap, dotted, suggest
from stageflow.workflows.model_names import KnownModels, model_warnings
from stageflow.workflows.refs import refs_from_data, refs_from_spec
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
from stageflow.workflows.toml_source import TomlSyntaxError, parse_toml
from stageflow.workflows.validate import check_refs
from stageflow.workflows.yaml_compose import compose_bounded, construct

Format = Literal["yaml", "toml"]
Finding = tuple[DocPath, int | None, str]  # path, line (None: look it up), message
_MERGE_TAG = "tag:yaml.org,2002:merge"
_WHAT = "template files"


@dataclass(frozen=True)
class Checked:
    """One template's outcome: its spec (``None`` when it has errors), errors and warnings.

    Warnings (an unknown model name) never make a template fail.
    """

    spec: WorkflowSpec | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Validation:
    """Errors and warnings of several files, each list in file order and by line within a file."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def load_template_file(
    path: Path, *, check: bool = True, agent_names: Collection[str] | None = None
) -> WorkflowSpec:
    """Load and check one template file (``.toml`` is TOML, anything else YAML).

    Raises ``SpecErrors`` listing every problem found; each names ``str(path)`` as its file.
    """
    return _spec_or_raise(check_template_file(path, check=check, agent_names=agent_names))


def check_template_file(
    path: Path,
    *,
    check: bool = True,
    agent_names: Collection[str] | None = None,
    models: KnownModels | None = None,
) -> Checked:
    """Load and check one template file; never raises for a bad file (see ``Checked``)."""
    try:
        text = read_template(path)
    except SpecErrors as exc:
        return Checked(None, exc.problems)
    fmt: Format = "toml" if path.suffix.lower() == ".toml" else "yaml"
    return check_template_text(
        text, source=str(path), fmt=fmt, check=check, agent_names=agent_names, models=models
    )


def read_template(path: Path) -> str:
    """The text of a template file, newlines made ``\\n``; at most ``MAX_FILE_BYTES``, read
    only if it is a regular file. Raises ``SpecErrors`` naming the file."""
    source = str(path)
    try:
        raw = read_bounded(path, _WHAT)
    except LimitExceeded as exc:
        raise SpecErrors([Problem(str(exc), file=source)]) from None
    except OSError as exc:
        raise SpecErrors(
            [Problem(f"cannot read file: {exc.strerror or exc}", file=source)]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecErrors([Problem(f"not UTF-8 text: {exc.reason}", file=source)]) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as ``Path.read_text`` reads


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
    checked = check_template_text(
        text, source=source, fmt=fmt, check=check, agent_names=agent_names
    )
    return _spec_or_raise(checked)


def check_template_text(
    text: str,
    *,
    source: str,
    fmt: Format = "yaml",
    check: bool = True,
    agent_names: Collection[str] | None = None,
    models: KnownModels | None = None,
) -> Checked:
    """Load and check a template's text: schema and cross-stage errors together, and, with
    ``models``, a warning for each stage ``model`` that is not a known name."""
    try:
        return _check(text, source, fmt, check, agent_names, models)
    except SpecErrors as exc:
        return Checked(None, exc.problems)


def validate_files(
    paths: Sequence[Path],
    *,
    agent_names: Collection[str] | None = None,
    models: KnownModels | None = None,
) -> Validation:
    """Load and check each file; errors and warnings of all files. Never raises for bad files."""
    out = Validation()
    for path in paths:
        try:
            checked = check_template_file(path, agent_names=agent_names, models=models)
        except Exception as exc:  # a bug in loading one file must not hide the others
            checked = Checked(None, [unexpected_problem(path, exc)])
        out.errors.extend(checked.errors)
        out.warnings.extend(checked.warnings)
    return out


def _spec_or_raise(checked: Checked) -> WorkflowSpec:
    if checked.spec is None:
        raise SpecErrors(checked.errors)
    return checked.spec


def _check(
    text: str,
    source: str,
    fmt: Format,
    check: bool,
    agent_names: Collection[str] | None,
    models: KnownModels | None,
) -> Checked:
    try:
        check_text_size(text, _WHAT)
    except LimitExceeded as exc:
        raise SpecErrors([Problem(str(exc), source)]) from None
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
    stages = data.get("stages")
    if isinstance(stages, list) and len(stages) > MAX_STAGES:
        message = f"too many stages: {len(stages)}; a template may have at most {MAX_STAGES}"
        raise SpecErrors([Problem(message, source, lines.line(("stages",)), path="stages")])
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        found += [(tuple(e["loc"]), None, _message(e)) for e in errors]
        refs = refs_from_data(data, source, _misspelled(errors))
        loaded = None
    else:
        stages = [
            s.model_copy(update={"line": lines.line(("stages", i))})
            for i, s in enumerate(spec.stages)
        ]
        loaded = spec.model_copy(update={"stages": stages, "source": source})
        refs = refs_from_spec(loaded)
    problems = [_locate(f, data, lines, source) for f in found]
    if check:
        problems += check_refs(refs, agent_names=agent_names, lines=lines, spec=loaded)
    warnings = model_warnings(refs, models, lines) if models is not None else []
    return Checked(None if problems else loaded, _by_line(problems), warnings)


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


def _limit_problem(exc: LimitExceeded, source: str) -> Problem:
    return Problem(str(exc), source, exc.line, path=exc.shown_path())


# --- YAML ----------------------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> tuple[Any, LineMap, list[Finding]]:
    try:
        node = compose_bounded(text)
        if node is None:
            return None, LineMap(), []
        lines, found = _walk(node)
        data = construct(node)
    except LimitExceeded as exc:
        raise SpecErrors([_limit_problem(exc, source)]) from None
    except yaml.MarkedYAMLError as exc:
        raise SpecErrors([_yaml_problem(exc, source)]) from None
    except yaml.YAMLError as exc:
        raise SpecErrors([Problem(f"invalid YAML: {exc}", source)]) from None
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
    """Lines of every document path and the duplicate keys (iterative; the composer refused
    recursive aliases, so the nodes form no cycle)."""
    lines: dict[DocPath, int] = {(): root.start_mark.line + 1}
    found: list[Finding] = []
    seen: set[int] = set()  # an alias shares its anchor's node: walk each node once
    todo: list[tuple[DocPath, yaml.Node]] = [((), root)]
    while todo:
        path, node = todo.pop()
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
        todo.extend(reversed(children))
    return LineMap(lines), found


# --- TOML ----------------------------------------------------------------------------------


def _parse_toml(text: str, source: str) -> tuple[Any, LineMap, list[Finding]]:
    try:
        data, lines = parse_toml(text)
    except TomlSyntaxError as exc:
        raise SpecErrors([Problem(f"invalid TOML: {exc.message}", source, exc.line)]) from None
    except LimitExceeded as exc:
        raise SpecErrors([_limit_problem(exc, source)]) from None
    return data, lines, []


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


_REFERENCE_FIELDS = ("depends_on", "produces", "inputs")


def _misspelled(errors: list[ErrorDetails]) -> set[DocPath]:
    """The reference fields an unknown field may be a misspelling of (``dependson`` ->
    ``("stages", 1, "depends_on")``): the cross-stage checks treat them as unknown."""
    out: set[DocPath] = set()
    for err in errors:
        loc = tuple(err["loc"])
        model = _model_at(loc[:-1]) if err["type"] == "extra_forbidden" else None
        if model is None:
            continue
        fields = [f for f in _REFERENCE_FIELDS if f in model.model_fields]
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
        if close:
            out.add((*loc[:-1], close[0]))
    return out


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
