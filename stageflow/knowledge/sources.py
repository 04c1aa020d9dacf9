"""Where knowledge files come from, and whether a given path is one.

Three kinds of roots, all project-relative:

- ``knowledge``: ``.stageflow/knowledge/**/*.md`` (ids relative to ``.stageflow/knowledge``);
- ``config``: the globs of ``[knowledge] paths`` in ``.stageflow/config.toml``, for example
  ``["docs/adr/**/*.md"]`` (ids relative to the project: ``docs/adr/0002-use-postgresql``);
- ``kogral``: ``.kogral/**/*.md`` when the folder exists (ids relative to ``.kogral``).

A file matched by several roots belongs to the first. Hidden files and folders below a root and
editor leftovers (``#name.md#``, ``name.md~``) are not knowledge. ``classify`` answers for any
path, existing or not, so the watcher's deletions can be mapped back to documents.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Literal

from stageflow.config import Settings
from stageflow.errors import Problem

log = logging.getLogger(__name__)

RootKind = Literal["knowledge", "config", "kogral"]
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Pattern:
    """One source of knowledge files: a project-relative glob and the folder ids start from."""

    kind: RootKind
    glob: str  # project-relative, POSIX, may use ** for any depth
    id_root: str | None  # project-relative folder doc ids are relative to (None: the project)

    @property
    def static_prefix(self) -> str:
        """The glob's folder part before its first wildcard (``docs/adr`` for
        ``docs/adr/**/*.md``); empty for a glob that starts with a wildcard."""
        parts: list[str] = []
        for part in PurePosixPath(self.glob).parts[:-1]:
            if _GLOB_CHARS.search(part):
                break
            parts.append(part)
        return "/".join(parts)


def _state_rel(settings: Settings) -> str:
    try:
        return settings.state_dir.relative_to(settings.project).as_posix()
    except ValueError:  # pragma: no cover - the state dir is always inside the project
        return ".stageflow"


def knowledge_patterns(settings: Settings, problems: list[Problem] | None = None) -> list[Pattern]:
    """Every knowledge source of the project, in precedence order. Invalid ``[knowledge]
    paths`` entries are logged (and appended to ``problems``) and skipped."""
    base = id_root(settings, "knowledge")
    out = [Pattern("knowledge", f"{base}/**/*.md", base)]
    section = settings.extra.get("knowledge")
    globs: object = section.get("paths", []) if isinstance(section, dict) else []
    where = str(settings.config_file)
    if isinstance(globs, str):
        globs = [globs]
    if not isinstance(globs, list):
        _problem(problems, Problem("must be a list of globs", file=where, path="knowledge.paths"))
        globs = []
    for i, glob in enumerate(globs):
        reason = _bad_glob(glob)
        if reason:
            _problem(problems, Problem(reason, file=where, path=f"knowledge.paths[{i}]"))
            continue
        assert isinstance(glob, str)
        out.append(Pattern("config", PurePosixPath(glob.replace("\\", "/")).as_posix(), None))
    out.append(Pattern("kogral", ".kogral/**/*.md", ".kogral"))
    return out


def _problem(problems: list[Problem] | None, problem: Problem) -> None:
    log.warning("knowledge config: %s", problem)
    if problems is not None:
        problems.append(problem)


def _bad_glob(glob: object) -> str | None:
    if not isinstance(glob, str) or not glob.strip():
        return f"must be a non-empty glob string, got {glob!r}"
    pure = PurePosixPath(glob.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", glob):
        return f"{glob!r} must be relative to the project"
    if ".." in pure.parts:
        return f"{glob!r} must stay inside the project (no '..')"
    return None


def id_root(settings: Settings, kind: str) -> str | None:
    """The project-relative folder doc ids of a root kind are relative to (None: project)."""
    if kind == "knowledge":
        return f"{_state_rel(settings)}/knowledge"
    if kind == "kogral":
        return ".kogral"
    return None


def knowledge_files(
    settings: Settings, problems: list[Problem] | None = None
) -> list[tuple[Path, str]]:
    """Every knowledge file of the project as (absolute path, root kind), sorted by path,
    each file once (the first matching root wins). Config problems go to ``problems``."""
    seen: dict[str, tuple[Path, str]] = {}
    for pattern in knowledge_patterns(settings, problems):
        if not (settings.project / pattern.static_prefix).is_dir():
            continue
        for path in settings.project.glob(pattern.glob):
            rel = path.relative_to(settings.project).as_posix()
            if rel in seen or not _visible(rel, pattern) or not path.is_file():
                continue
            seen[rel] = (path, pattern.kind)
    return [seen[rel] for rel in sorted(seen)]


def knowledge_roots(settings: Settings) -> list[Path]:
    """The folders a watcher must watch (existing or not), outermost first, no duplicates."""
    roots: dict[Path, None] = {}
    for pattern in knowledge_patterns(settings):
        prefix = pattern.id_root or pattern.static_prefix
        roots.setdefault(settings.project / prefix if prefix else settings.project, None)
    return list(roots)


def project_path(settings: Settings, path: Path) -> str | None:
    """``path`` relative to the project as POSIX text ("" for the project itself), or None
    when it is outside."""
    full = path if path.is_absolute() else settings.project / path
    try:
        rel = full.relative_to(settings.project).as_posix()
    except ValueError:
        try:
            rel = full.resolve().relative_to(settings.project.resolve()).as_posix()
        except (ValueError, OSError):
            return None
    return "" if rel == "." else rel


def classify(settings: Settings, path: Path) -> Pattern | None:
    """The source a file at ``path`` belongs to (whether or not it exists), or None."""
    rel = project_path(settings, path)
    if rel is None:
        return None
    for pattern in knowledge_patterns(settings):
        if glob_match(pattern.glob, rel) and _visible(rel, pattern):
            return pattern
    return None


def _visible(rel: str, pattern: Pattern) -> bool:
    """No hidden segment below the pattern's root, and not an editor's temporary file."""
    root = pattern.id_root or pattern.static_prefix
    below = rel[len(root) + 1 :] if root and rel.startswith(root + "/") else rel
    parts = below.split("/")
    name = parts[-1]
    if name.startswith(("#", "~")) or name.endswith(("~", "#")):
        return False
    return not any(part.startswith(".") for part in parts)


def glob_match(glob: str, rel: str) -> bool:
    """Whether the POSIX path ``rel`` matches ``glob`` (``**`` = any number of folders)."""
    return _compiled(glob).fullmatch(rel) is not None


@lru_cache(maxsize=64)
def _compiled(glob: str) -> re.Pattern[str]:
    parts: list[str] = []
    segments = glob.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:.*/)?")
        else:
            parts.append(_segment(segment) + ("" if last else "/"))
    return re.compile("".join(parts))


def _segment(segment: str) -> str:
    """One path segment's wildcards as a regex that never crosses a ``/``."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and segment.find("]", i + 2) != -1:
            end = segment.find("]", i + 2)  # a "]" right after "[" is part of the class
            inner = segment[i + 1 : end]
            negate = inner.startswith("!")
            inner = inner[1:] if negate else inner
            cls = "".join(c if c == "-" else re.escape(c) for c in inner)
            out.append(f"[{'^/' if negate else ''}{cls}]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)
