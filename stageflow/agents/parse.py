"""Parse agent definition files: Claude Code's ``.claude/agents/*.md`` format.

A file is a ``---`` line, YAML front matter, a closing ``---`` line, then the Markdown body, which
is the agent's system prompt::

    ---
    name: code-reviewer
    description: Reviews a change for correctness and clarity. Use after implementation.
    tools: Read, Grep, Glob
    model: sonnet
    ---
    You are a senior reviewer ...

Known keys are checked (``name``, ``description``, ``tools``, ``model``, and our ``max_turns``,
``budget_usd``, ``skills``, ``knowledge``); every other key (Claude Code's ``color``,
``permissionMode`` ...) is kept unchanged in ``extra``. Claude Code's ``maxTurns`` is read as
``max_turns``. An absent or empty ``tools`` means "inherit every tool". Every mistake is reported
as a ``Problem`` with the file, the line and the reason; all field problems of one file are
reported together (``SpecErrors``).

A file is read only when it is a regular file of at most ``MAX_FILE_BYTES``, and its front matter
is composed within the bounds of ``stageflow.workflows.bounds`` (nesting depth, YAML aliases), so
a hostile file is one problem with its line, never a RecursionError or an alias bomb.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stageflow.agents.definition import AgentDefinition
from stageflow.errors import Problem, SpecError, SpecErrors
from stageflow.workflows.bounds import LimitExceeded, check_text_size, read_bounded
from stageflow.workflows.yaml_compose import compose_bounded, construct

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$", re.IGNORECASE)
MODEL_ALIASES: tuple[str, ...] = ("opus", "sonnet", "haiku", "inherit")
_FENCE = "---"
_WHAT = "agent files"
_YAML_FIRST_LINE = 2  # the front matter's YAML starts on the line after the opening fence
_KNOWN_KEYS = frozenset(
    {
        "name",
        "description",
        "tools",
        "model",
        "max_turns",
        "maxTurns",
        "budget_usd",
        "skills",
        "knowledge",
    }
)


@dataclass(frozen=True)
class _Split:
    yaml_text: str
    close_line: int  # 1-based line of the closing fence
    body: str


def parse_agent_file(path: Path, *, layer: str) -> AgentDefinition:
    """Read and parse one agent file; raises ``SpecError`` naming the file on any problem."""
    where = str(path)
    try:
        raw = read_bounded(path, _WHAT)
    except LimitExceeded as exc:
        raise SpecError(Problem(str(exc), file=where)) from None
    except OSError as exc:
        raise SpecError(Problem(f"cannot read file: {exc.strerror or exc}", file=where)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            Problem(f"not UTF-8 text (bad byte at offset {exc.start})", file=where)
        ) from exc
    return parse_agent_text(text, source=where, layer=layer)


def parse_agent_text(text: str, *, source: str | None, layer: str) -> AgentDefinition:
    """Parse the text of one agent file.

    ``source`` is the file path used in problems and kept on the definition (``None`` for text
    that did not come from a file); ``layer`` records which agent folder it came from. Raises
    ``SpecError`` for one problem and ``SpecErrors`` for several.
    """
    where = source or "<agent>"
    try:
        check_text_size(text, _WHAT)
    except LimitExceeded as exc:
        raise SpecError(Problem(str(exc), file=where)) from None
    split = _split(text, where)
    data, key_lines = _load_yaml(split.yaml_text, where)
    problems: list[Problem] = []
    if data is None:
        raise SpecError(
            Problem(
                "front matter is empty: it needs at least 'name' and 'description'",
                file=where,
                line=_YAML_FIRST_LINE,
            )
        )
    if not isinstance(data, dict):
        raise SpecError(
            Problem(
                f"front matter must be a mapping of keys (name, description, ...), got "
                f"{_kind(data)}",
                file=where,
                line=_YAML_FIRST_LINE,
            )
        )
    fields = _Fields(data, key_lines, where, problems)
    name = fields.name()
    description = fields.description()
    tools = fields.names_list("tools", "tool")
    model = fields.model()
    max_turns = fields.max_turns()
    budget = fields.budget()
    skills = fields.names_list("skills", "skill")
    knowledge = fields.knowledge()
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            problems.append(
                Problem(
                    f"front matter keys must be strings, got {_show(key)}",
                    file=where,
                    line=key_lines.get(str(key), _YAML_FIRST_LINE),
                )
            )
        elif key not in _KNOWN_KEYS:
            extra[key] = value
    if not split.body:
        problems.append(
            Problem(
                "empty body: the Markdown after the front matter is the agent's system prompt and "
                "must not be empty",
                file=where,
                line=split.close_line,
            )
        )
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise SpecError(problems[0]) if len(problems) == 1 else SpecErrors(problems)
    return AgentDefinition(
        name=name,
        description=description,
        tools=tools,
        model=model,
        max_turns=max_turns,
        budget_usd=budget,
        skills=skills,
        knowledge=knowledge,
        system_prompt=split.body,
        extra=extra,
        source=source,
        layer=layer,
    )


def _split(text: str, where: str) -> _Split:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[0].rstrip() != _FENCE:
        raise SpecError(
            Problem(
                "no front matter: an agent file starts with a '---' line, then YAML keys (name, "
                "description, ...), then a closing '---' line",
                file=where,
                line=1,
            )
        )
    close = next((i for i in range(1, len(lines)) if lines[i].rstrip() == _FENCE), None)
    if close is None:
        raise SpecError(
            Problem("unterminated front matter: no closing '---' line", file=where, line=1)
        )
    body_lines = lines[close + 1 :]
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    return _Split(
        yaml_text="\n".join(lines[1:close]),
        close_line=close + 1,
        body="\n".join(body_lines).rstrip(),
    )


def _load_yaml(yaml_text: str, where: str) -> tuple[object, dict[str, int]]:
    """The front matter's value and the file line of each top-level key."""
    try:
        node = compose_bounded(yaml_text)
        key_lines = _key_lines(node, where)  # before constructing: merges rewrite the node
        data = construct(node) if node is not None else None
    except LimitExceeded as exc:
        line = _YAML_FIRST_LINE if exc.line is None else exc.line + _YAML_FIRST_LINE - 1
        raise SpecError(
            Problem(f"front matter: {exc}", file=where, line=line, path=exc.shown_path())
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + _YAML_FIRST_LINE if mark is not None else _YAML_FIRST_LINE
        reason = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context and exc.context_mark is not None:
            # e.g. an unclosed '[' is noticed lines later; say where it started
            reason += f" ({exc.context} started on line {exc.context_mark.line + _YAML_FIRST_LINE})"
        raise SpecError(
            Problem(f"invalid YAML in front matter: {reason}", file=where, line=line)
        ) from exc
    except yaml.YAMLError as exc:
        raise SpecError(
            Problem(f"invalid YAML in front matter: {exc}", file=where, line=_YAML_FIRST_LINE)
        ) from exc
    return data, key_lines


def _key_lines(node: yaml.Node | None, where: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
            continue
        key, line = str(key_node.value), key_node.start_mark.line + _YAML_FIRST_LINE
        if key in lines:
            # PyYAML silently keeps the last value; Claude Code's parser rejects the file
            raise SpecError(
                Problem(
                    f"duplicate key '{key}' (first given on line {lines[key]})",
                    file=where,
                    line=line,
                )
            )
        lines[key] = line
        if isinstance(value_node, yaml.SequenceNode):
            for i, item in enumerate(value_node.value):
                lines[f"{key}[{i}]"] = item.start_mark.line + _YAML_FIRST_LINE
    return lines


class _Fields:
    """Checks the known keys, collecting a ``Problem`` per bad value."""

    def __init__(
        self, data: dict[Any, Any], lines: dict[str, int], where: str, problems: list[Problem]
    ) -> None:
        self.data, self.lines, self.where, self.problems = data, lines, where, problems

    def _bad(self, key: str, message: str) -> None:
        self.problems.append(
            Problem(message, file=self.where, line=self.lines.get(key, _YAML_FIRST_LINE), path=key)
        )

    def _bad_item(self, key: str, index: int, message: str) -> None:
        self._bad(f"{key}[{index}]", message)

    def _missing(self, message: str) -> None:
        self.problems.append(Problem(message, file=self.where, line=1))

    def name(self) -> str:
        if "name" not in self.data:
            self._missing(
                "missing required key 'name' (the agent's stable id, e.g. 'code-reviewer')"
            )
            return ""
        value = self.data["name"]
        if not isinstance(value, str):
            self._bad("name", f"must be a string, got {_show(value)}")
            return ""
        if not NAME_PATTERN.match(value):
            self._bad(
                "name",
                f"{value!r} is not a valid agent name: use letters, digits, '-' "
                "and '_', starting with a letter or digit",
            )
        return value

    def description(self) -> str:
        if "description" not in self.data:
            self._missing(
                "missing required key 'description' (Claude Code uses it to decide "
                "when to delegate to the agent)"
            )
            return ""
        value = self.data["description"]
        if value is None or (isinstance(value, str) and not value.strip()):
            self._bad("description", "must not be empty")
            return ""
        if not isinstance(value, str):
            self._bad("description", f"must be a string, got {_show(value)}")
            return ""
        return value.strip()

    def names_list(self, key: str, noun: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return _dedupe(_split_names(value))
        if not isinstance(value, list):
            self._bad(
                key,
                f"must be a comma-separated string or a list of {noun} names, got {_show(value)}",
            )
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self._bad_item(key, i, f"must be a {noun} name, got {_show(item)}")
            else:
                out.append(item.strip())
        return _dedupe(out)

    def model(self) -> str:
        value = self.data.get("model")
        if value is None:
            return "inherit"
        if (
            not isinstance(value, str)
            or not value.strip()
            or any(c.isspace() for c in value.strip())
        ):
            self._bad(
                "model",
                f"must be opus, sonnet, haiku, inherit or a full model id, got {_show(value)}",
            )
            return "inherit"
        value = value.strip()
        return value.lower() if value.lower() in MODEL_ALIASES else value

    def max_turns(self) -> int | None:
        key = "max_turns" if "max_turns" in self.data else "maxTurns"
        if "max_turns" in self.data and "maxTurns" in self.data:
            self._bad("maxTurns", "conflicts with 'max_turns'; give only one of them")
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self._bad(key, f"must be an integer greater than 0, got {_show(value)}")
            return None
        return value

    def budget(self) -> float | None:
        value = self.data.get("budget_usd")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self._bad("budget_usd", f"must be a number >= 0 (US dollars), got {_show(value)}")
            return None
        return float(value)

    def knowledge(self) -> dict[str, Any]:
        value = self.data.get("knowledge")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._bad("knowledge", f"must be a mapping (e.g. {{tags: [api]}}), got {_show(value)}")
            return {}
        if not all(isinstance(k, str) for k in value):
            self._bad("knowledge", "keys must be strings")
            return {}
        return dict(value)


def _split_names(text: str) -> list[str]:
    """Split ``Read, Grep, Bash(git diff:*, git log:*)`` at commas outside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth:
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _show(value: object) -> str:
    """A short, YAML-flavoured rendering of a value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    return _kind(value)
