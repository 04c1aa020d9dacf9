"""Glob and Grep matching, run as a script in a child process: ``python -I -S search_child.py``.

Everything that may take unbounded time or memory on model input happens here, never in the
server: expanding ``{a,b}`` alternatives, turning globs into regular expressions, compiling
and running them (Python's ``re`` holds the GIL while it backtracks and cannot be
interrupted). The parent (``search.run_search``) kills this process on its time limit or when
the stage is cancelled, and the process caps its own address space (``MEMORY_LIMIT``).

Brace expansion is bounded before anything is expanded: the number of alternatives a pattern
stands for is counted on its parse tree (``{a,b}`` sixteen times is 65,536, forty times about
10^12), and over ``MAX_EXPANSIONS`` the pattern is refused; so are braces nested deeper than
``MAX_DEPTH`` and patterns longer than ``MAX_PATTERN`` characters. The parser keeps its own
stack, so no nesting raises ``RecursionError``.

Standalone: only the standard library, so it starts without site-packages and is run by path.
Input is one JSON job on stdin; output one JSON object on stdout, the result or
``{"error": message}`` for a mistake the model can fix. File paths travel as the latin-1 text
of their bytes, so any file name survives the JSON.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from typing import Any

MAX_EXPANSIONS = 1024  # alternatives one glob may stand for
MAX_DEPTH = 8  # braces inside braces
MAX_PATTERN = 4096  # characters of one glob
MEMORY_LIMIT = 1 << 30  # bytes of address space for this process


class GlobError(ValueError):
    """A pattern (a glob, or Grep's regular expression) the model must change; the message
    says how."""


class Alt:
    """``{x,y,...}``: alternatives, each a sequence of literal text and nested ``Alt``."""

    def __init__(self) -> None:
        self.options: list[list[Any]] = [[]]


def _class_end(pattern: str, i: int) -> int:
    """Index after a ``[...]`` class starting at ``i``, or -1 when it does not close."""
    close = pattern.find("]", i + 2)
    return -1 if close == -1 else close + 1


def _pairs(pattern: str) -> dict[int, int]:
    """Matching ``{`` -> ``}`` positions outside classes; unmatched braces stay literal."""
    pairs: dict[int, int] = {}
    opened: list[int] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[" and _class_end(pattern, i) != -1:
            i = _class_end(pattern, i)
            continue
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            pairs[opened.pop()] = i
        i += 1
    return pairs


def parse(pattern: str) -> list[Any]:
    """The pattern as a sequence of text and ``Alt`` nodes (iteratively: no recursion)."""
    pairs = _pairs(pattern)
    closes = set(pairs.values())
    root: list[Any] = []
    frames: list[tuple[Alt, list[Any]]] = []  # (the open group, the sequence it sits in)
    seq = root
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[" and _class_end(pattern, i) != -1:
            end = _class_end(pattern, i)
            seq.append(pattern[i:end])
            i = end
            continue
        if ch == "{" and i in pairs:
            if len(frames) >= MAX_DEPTH:
                raise GlobError(
                    f"glob pattern `{pattern}` nests braces deeper than {MAX_DEPTH} levels; "
                    "flatten the alternatives"
                )
            alt = Alt()
            frames.append((alt, seq))
            seq = alt.options[0]
        elif ch == "," and frames:
            alt = frames[-1][0]
            alt.options.append([])
            seq = alt.options[-1]
        elif ch == "}" and i in closes and frames:
            alt, parent = frames.pop()
            parent.append(alt)
            seq = parent
        else:
            seq.append(ch)
        i += 1
    return root


def count(seq: list[Any]) -> int:
    """How many patterns ``seq`` stands for, saturating just above ``MAX_EXPANSIONS``."""
    total = 1
    for item in seq:
        if isinstance(item, Alt):
            total *= min(sum(count(o) for o in item.options), MAX_EXPANSIONS + 1)
            total = min(total, MAX_EXPANSIONS + 1)
    return total


def expand(pattern: str) -> list[str]:
    """The patterns ``{a,b}`` alternatives stand for, refused beyond ``MAX_EXPANSIONS``."""
    if len(pattern) > MAX_PATTERN:
        raise GlobError(
            f"the glob pattern is {len(pattern)} characters, over the {MAX_PATTERN}-character "
            "limit; use a shorter pattern"
        )
    tree = parse(pattern)
    if count(tree) > MAX_EXPANSIONS:
        raise GlobError(
            f"glob pattern `{pattern[:200]}` stands for more than {MAX_EXPANSIONS} patterns "
            "(each `{a,b}` group multiplies them); use fewer groups or a wildcard such as "
            "`*.py`, or search several times"
        )
    return _expand_seq(tree)


def _expand_seq(seq: list[Any]) -> list[str]:
    # depth is bounded by MAX_DEPTH and the result by MAX_EXPANSIONS
    out = [""]
    for item in seq:
        if isinstance(item, Alt):
            options = [s for o in item.options for s in _expand_seq(o)]
            out = [head + tail for head in out for tail in options]
        else:
            out = [head + item for head in out]
    return out


def check(pattern: str) -> None:
    """Refuse an empty glob, or one that leaves the search directory."""
    if not pattern.strip():
        raise GlobError("the glob pattern is empty; e.g. `**/*.py`")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise GlobError(
            f"glob pattern `{pattern}` must be relative (no leading `/`, no `..`); "
            "pass the directory to search as `path`"
        )


def glob_regex(pattern: str) -> str:
    """A regular expression for a glob without braces, over POSIX relative paths.

    ``**/`` matches zero or more directories, ``**`` anything, ``*`` and ``?`` stay inside one
    path segment, ``[...]`` is a character class (``[!...]`` negated).
    """
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and _class_end(pattern, i) != -1:
            end = _class_end(pattern, i)
            body = pattern[i + 1 : end - 1]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = end
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def compile_globs(globs: list[str]) -> re.Pattern[str] | None:
    """One regular expression matching any expansion of any of ``globs`` (None: no globs)."""
    parts: list[str] = []
    for glob in globs:
        check(glob)
        for expanded in expand(glob):
            check(expanded)
            parts.append(glob_regex(expanded))
    if not parts:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(parts)))
    except re.error as exc:
        raise GlobError(f"glob pattern `{', '.join(globs)}` is not valid: {exc}") from None


def _read_regular(name: str, limit: int) -> bytes | None:
    """The first ``limit + 1`` bytes of a regular file; None for anything else or an error.

    ``O_NONBLOCK``: a file swapped for a FIFO after the walk must not block the open."""
    try:
        fd = os.open(name.encode("latin-1"), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def grep(job: dict[str, Any], globs: re.Pattern[str] | None) -> dict[str, Any]:
    """Matching lines of the job's files (those whose names pass ``globs``)."""
    try:
        rx = re.compile(job["pattern"], re.IGNORECASE if job["ignore_case"] else 0)
    except re.error as exc:
        raise GlobError(f"`{job['pattern']}` is not a valid regular expression: {exc}") from None
    hits: list[list[Any]] = []
    skipped, truncated, cap = 0, False, job["line_chars"]
    for i, name in enumerate(job["files"]):
        if globs is not None and not any(globs.fullmatch(t) for t in job["names"][i]):
            continue
        data = _read_regular(name, job["max_bytes"])
        if data is None or len(data) > job["max_bytes"] or b"\0" in data[: job["sniff"]]:
            skipped += 1
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if rx.search(line):
                if len(hits) >= job["max_matches"]:
                    truncated = True
                    break
                hits.append([i, number, line if len(line) <= cap else line[:cap] + " [...]"])
        if truncated:
            break
    return {"hits": hits, "skipped": skipped, "truncated": truncated}


def run(job: dict[str, Any]) -> dict[str, Any]:
    """The answer to one job: ``{"found": [...]}`` for Glob, hits for Grep, or an error."""
    try:
        globs = compile_globs(job["globs"])
        if job["mode"] == "glob":
            assert globs is not None
            names = job["names"]
            return {"found": [i for i, texts in enumerate(names) if globs.fullmatch(texts[0])]}
        return grep(job, globs)
    except GlobError as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {
            "error": f"the search ran out of memory (limit {MEMORY_LIMIT >> 20} MiB); "
            "narrow the pattern or the path"
        }
    except RecursionError:
        return {"error": "the pattern is nested too deeply to compile; simplify it"}


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass  # no rlimits here: the parent's time limit still bounds the search


if __name__ == "__main__":
    _limit_memory()
    answer = run(json.loads(sys.stdin.buffer.read()))
    sys.stdout.write(json.dumps(answer))
