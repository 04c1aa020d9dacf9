"""Knowledge documents: one Markdown file (or run artifact) with what the index needs to know.

A file may start with YAML front matter (``id``, ``title``, ``type``, ``tags``, ``status``);
everything is optional and nothing in the content makes parsing fail: front matter that does not
parse is reported as a ``Problem`` (logged, and collected when the caller passes a list) and the
whole text is treated as the body.

Architecture decision records are recognised without front matter, in the two common formats:

- adr-tools (Nygard): ``# 2. Use PostgreSQL``, ``Date: ...``, ``## Status`` followed by a line
  such as ``Accepted`` or ``Superseded by [7. ...](0007-....md)``, ``## Context``,
  ``## Decision``, ``## Consequences``;
- MADR: ``## Context and Problem Statement``, ``## Considered Options``, ``## Decision Outcome``,
  with the status in front matter (MADR 3+) or a ``* Status: accepted`` line (MADR 2).
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal, get_args

import yaml

from stageflow.errors import Problem

log = logging.getLogger(__name__)

DocType = Literal["guideline", "pattern", "adr", "decision", "note", "artifact"]
DOC_TYPES: tuple[str, ...] = get_args(DocType)
#: Statuses an ADR or decision can have (MADR adds ``rejected``; ``draft`` is common too).
STATUSES: tuple[str, ...] = (
    "proposed",
    "accepted",
    "rejected",
    "deprecated",
    "superseded",
    "draft",
)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 20x faster
_FRONT_MATTER_LIMIT = 64_000  # characters; a longer "front matter" is not one
_FOLDER_HINTS: dict[str, DocType] = {
    "guidelines": "guideline",
    "guideline": "guideline",
    "conventions": "guideline",
    "patterns": "pattern",
    "pattern": "pattern",
    "adr": "adr",
    "adrs": "adr",
    "decisions": "decision",
    "notes": "note",
}
_TYPE_ALIASES: dict[str, DocType] = {
    "guidelines": "guideline",
    "convention": "guideline",
    "patterns": "pattern",
    "decision-record": "adr",
    "architecture-decision": "adr",
    "decisions": "decision",
    "notes": "note",
}
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_MADR_MARKERS = ("context and problem statement", "decision outcome", "considered options")
_NYGARD_SECTIONS = ("status", "context", "decision")
_STATUS_LINE = re.compile(r"^[ \t]*(?:[*-][ \t]+)?status[ \t]*:[ \t]*(.+)$", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_SLUG_STRIP = re.compile(r"[^a-z0-9._/-]+")


@dataclass(frozen=True)
class Document:
    """One knowledge document.

    ``doc_id``: front matter ``id``, else a slug of the path relative to its root (for example
    ``guidelines/error-handling``); artifacts are ``run/<run>/<stage>/<name>``. ``path`` is the
    project-relative POSIX path (None for artifacts); ``body`` is the text without front matter
    and starts on line ``body_line`` of the file.
    """

    doc_id: str
    title: str
    type: DocType
    tags: tuple[str, ...]
    status: str | None
    path: str | None
    body: str
    body_line: int
    run_id: str | None = None
    stage: str | None = None


def parse_document(
    text: str,
    *,
    path: str,
    root_hint: str | None = None,
    problems: list[Problem] | None = None,
) -> Document:
    """Parse a knowledge file's text. Never raises on content.

    ``path`` is the project-relative POSIX path; ``root_hint`` the project-relative folder the
    file was found under (its id is the path relative to it; the whole path when None). Problems
    (bad front matter, an unknown type) are logged and appended to ``problems`` when given.
    """
    found: list[Problem] = []
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    meta, body, body_line = _front_matter(text, path, found)
    title = _text_value(meta.get("title")) or first_h1(body) or _stem_title(path)
    doc_type = _doc_type(meta, body, path, found)
    status = _status(meta, body) if doc_type in ("adr", "decision") or "status" in meta else None
    doc = Document(
        doc_id=_text_value(meta.get("id")) or slug_id(path, root_hint),
        title=title,
        type=doc_type,
        tags=normalize_tags(meta.get("tags")),
        status=status,
        path=path,
        body=body,
        body_line=body_line,
    )
    for problem in found:
        log.warning("knowledge: %s", problem)
    if problems is not None:
        problems.extend(found)
    return doc


def slug_id(path: str, root_hint: str | None = None) -> str:
    """The stable id of a file without an ``id``: its path relative to ``root_hint``, without
    the ``.md`` suffix, lower-cased, with runs of other characters turned into ``-``."""
    pure = PurePosixPath(path)
    if root_hint:
        with contextlib.suppress(ValueError):  # not under its root: the whole path
            pure = pure.relative_to(PurePosixPath(root_hint))
    rel = str(pure.with_suffix("")) if pure.suffix.lower() in (".md", ".markdown") else str(pure)
    slug = _SLUG_STRIP.sub("-", rel.lower().replace(" ", "-"))
    slug = re.sub(r"-{2,}", "-", slug)
    parts = [p.strip("-.") for p in slug.split("/")]
    return "/".join(p for p in parts if p) or "untitled"


def normalize_tags(value: object) -> tuple[str, ...]:
    """Tags from a YAML list or a comma/space separated string: stripped, lower-case, unique."""
    items: list[object]
    if isinstance(value, str):
        items = list(re.split(r"[,\s]+", value))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return ()
    out: dict[str, None] = {}
    for item in items:
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            tag = str(item).strip().lstrip("#").lower()
            if tag:
                out[tag] = None
    return tuple(out)


def normalize_status(raw: str) -> str | None:
    """``Accepted``, ``superseded by [ADR-7](...)``, ``**Proposed**`` -> a lower-case word."""
    words: list[str] = _WORD.findall(raw.lower())
    if not words:
        return None
    for word in words[:3]:
        for known in STATUSES:
            if word.startswith(known):
                return known
    return words[0]


def _front_matter(text: str, path: str, found: list[Problem]) -> tuple[dict[str, Any], str, int]:
    """(front matter mapping, body, 1-based line where the body starts)."""
    if not text.startswith("---"):
        return {}, text, 1
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return {}, text, 1
    close = next(
        (i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")),
        None,
    )
    if close is None:
        found.append(Problem("front matter has no closing '---' line", file=path, line=1))
        return {}, text, 1
    yaml_text = "\n".join(lines[1:close])
    if len(yaml_text) > _FRONT_MATTER_LIMIT:
        found.append(Problem("front matter is too long; read as body", file=path, line=1))
        return {}, text, 1
    try:
        data = yaml.load(yaml_text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        reason = getattr(exc, "problem", None) or "cannot parse"
        found.append(Problem(f"invalid YAML in front matter: {reason}", file=path, line=line))
        return {}, text, 1
    except RecursionError:
        found.append(Problem("front matter nests too deeply", file=path, line=2))
        return {}, text, 1
    if data is None:
        data = {}
    if not isinstance(data, dict):
        found.append(Problem("front matter is not a mapping of keys; read as body", file=path))
        return {}, text, 1
    body = "\n".join(lines[close + 1 :])
    return {str(k): v for k, v in data.items()}, body, close + 2


def _text_value(value: object) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


def headings(body: str) -> list[tuple[int, int, str]]:
    """(0-based line, level, text) of each ATX heading outside fenced code blocks."""
    out: list[tuple[int, int, str]] = []
    fence: str | None = None
    for i, line in enumerate(body.split("\n")):
        fenced = _FENCE.match(line)
        if fenced:
            marker = fenced.group(1)
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            continue
        if fence is None:
            m = _HEADING.match(line)
            if m:
                out.append((i, len(m.group(1)), m.group(2).strip()))
    return out


def first_h1(body: str) -> str | None:
    """The text of the first level-1 heading outside code blocks, if any."""
    return next((text for _, level, text in headings(body) if level == 1), None)


def _stem_title(path: str) -> str:
    stem = PurePosixPath(path).stem
    return re.sub(r"[-_]+", " ", stem).strip() or stem or "untitled"


def _doc_type(meta: dict[str, Any], body: str, path: str, found: list[Problem]) -> DocType:
    raw = meta.get("type")
    if raw is not None:
        value = str(raw).strip().lower()
        value = _TYPE_ALIASES.get(value, value)
        if value in DOC_TYPES:
            return value  # type: ignore[return-value]
        found.append(
            Problem(
                f"unknown type {raw!r}; expected one of {', '.join(DOC_TYPES)}",
                file=path,
                path="type",
            )
        )
    if is_adr(body):
        return "adr"
    for folder in reversed(PurePosixPath(path).parts[:-1]):
        hint = _FOLDER_HINTS.get(folder.lower())
        if hint is not None:
            return hint
    return "note"


def is_adr(body: str) -> bool:
    """True for a MADR or adr-tools decision record (by its section headings)."""
    names = {text.lower().rstrip(":") for _, level, text in headings(body) if level >= 2}
    if any(marker in names for marker in _MADR_MARKERS):
        return True
    return all(section in names for section in _NYGARD_SECTIONS)


def _status(meta: dict[str, Any], body: str) -> str | None:
    raw = _text_value(meta.get("status"))
    if raw:
        return normalize_status(raw)
    lines = body.split("\n")
    for i, level, text in headings(body):
        if level >= 2 and text.lower().rstrip(":") == "status":
            following = (line.strip() for line in lines[i + 1 :])
            first = next((line for line in following if line), "")
            if not first.startswith("#"):
                return normalize_status(first)
            break
    for line in lines[:40]:  # MADR 2: "* Status: accepted" near the top
        m = _STATUS_LINE.match(line)
        if m:
            return normalize_status(m.group(1))
    return None
