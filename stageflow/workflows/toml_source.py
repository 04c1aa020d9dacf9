"""TOML template text to data and a best-effort line map, within the nesting bound.

``tomllib`` parses arrays and inline tables by recursion, so ``x = [[[[...`` of 20 KB raises
RecursionError. Before parsing, a linear scan counts the brackets outside strings and comments
and refuses nesting past ``MAX_DEPTH`` at its line; after parsing, the data is checked once more
(dotted keys and table headers nest without brackets). Lines are found by scanning the table
headers and keys, since ``tomllib`` keeps no positions.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from stageflow.workflows.bounds import MAX_DEPTH, LimitExceeded, deepest_path, too_deep
from stageflow.workflows.locations import DocPath, LineMap

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_ARRAY = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_TOML_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_TOML_KEY = re.compile(r"""^\s*([A-Za-z0-9_\-."' ]+?)\s*=""")
_OPEN = "[{"
_SIGNIFICANT = re.compile(r"[\n#\"'\[\]{}]")
# where a string ends: its closing quote (a one-line string also at the line's end, where
# tomllib reports it); basic strings skip backslash escapes
_STRING_END = {
    '"': re.compile(r'(?:[^"\\\n]|\\.)*(?:"|\n|$)'),
    "'": re.compile(r"[^'\n]*(?:'|\n|$)"),
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.DOTALL),
    "'''": re.compile(r"(?:[^']|'(?!''))*'''", re.DOTALL),
}


class TomlSyntaxError(ValueError):
    """``tomllib``'s error with its line taken out of the message."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def parse_toml(text: str) -> tuple[dict[str, Any], LineMap]:
    """The data and line map of ``text``.

    Raises ``LimitExceeded`` when it nests deeper than ``MAX_DEPTH`` and ``TomlSyntaxError``
    when it is not TOML.
    """
    check_brackets(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line = str(exc), None
        m = _TOML_POS.search(message)
        if m:
            line = int(m.group(1))
            message = f"{message[: m.start()]} (column {m.group(2)})"
        raise TomlSyntaxError(message, line) from None
    lines = toml_lines(text)
    deep = deepest_path(data)
    if deep is not None:
        error = too_deep(deep)
        # the key or header that made it: the first line at or below the deep path
        below = [n for p, n in lines.lines.items() if p[: len(deep)] == deep]
        error.line = min(below) if below else lines.line(deep)
        raise error
    return data, lines


def check_brackets(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse ``[``/``{`` nested past ``limit`` outside strings and comments (one pass).

    Table headers count too (``[[stages]]`` is two levels on its own line), which only makes
    the bound a little stricter than the data's depth.
    """
    depth, line, i = 0, 1, 0
    while (m := _SIGNIFICANT.search(text, i)) is not None:
        ch, i = m.group(), m.end()
        if ch == "\n":
            line += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 2, i) else ch
            end = _string_end(text, m.start() + len(quote), quote)
            line += text.count("\n", i, end)
            i = end
        elif ch in _OPEN:
            depth += 1
            if depth > limit:
                raise LimitExceeded(
                    "nested too deeply",
                    line=line,
                    column=m.start() - text.rfind("\n", 0, m.start()),
                    detail=f"more than {limit} levels of arrays and tables",
                )
        elif depth:
            depth -= 1


def _string_end(text: str, start: int, quote: str) -> int:
    """The offset just past the string whose body starts at ``start`` (or the text's end)."""
    pattern = _STRING_END[quote]
    m = pattern.match(text, start)
    return len(text) if m is None else m.end()


def _toml_parts(name: str) -> list[str]:
    return [p.strip().strip("\"'") for p in name.split(".")]


def toml_lines(text: str) -> LineMap:
    """Best-effort lines: table headers, ``[[array]]`` entries and the keys under them."""
    lines: dict[DocPath, int] = {(): 1}
    arrays: dict[DocPath, int] = {}  # array-of-tables path -> index of its latest entry
    current: DocPath = ()
    in_multiline = False

    def resolve(parts: list[str]) -> DocPath:
        path: DocPath = ()
        for part in parts[: MAX_DEPTH + 1]:  # deeper is refused anyway; keeps this linear
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
            key = _toml_parts(m.group(1))[: MAX_DEPTH + 1]
            lines.setdefault((*current, *key), number)
        in_multiline = toggles % 2 == 1
    return LineMap(lines)
