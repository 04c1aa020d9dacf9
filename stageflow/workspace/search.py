"""Glob and Grep matching in a killable child process, and glob patterns as regexes.

Python's ``re`` holds the GIL while it backtracks and cannot be interrupted, so a pattern such
as ``(a+)+$`` would stall the whole server; a child process can be killed, on a timeout or when
the caller is cancelled (``SearchStop``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from stageflow.errors import ToolError

__all__ = ["SearchStop", "glob_parts", "glob_regex", "run_search"]


# Grep and Glob run their regular expressions here, in a child process: Python's `re` holds
# the GIL while it backtracks, so a pattern such as `(a+)+$` would freeze the event loop (and
# a worker thread could not be cancelled); a child can be killed. Paths go as latin-1 text of
# their bytes, so any file name survives the JSON.
_SEARCH_CHILD = r"""
import json, re, sys
job = json.loads(sys.stdin.buffer.read())
globs = [re.compile(p) for p in job["globs"]]
def wanted(texts):
    return any(rx.fullmatch(t) for rx in globs for t in texts)
if job["mode"] == "glob":
    out = {"found": [i for i, texts in enumerate(job["names"]) if wanted(texts)]}
else:
    rx = re.compile(job["pattern"], re.IGNORECASE if job["ignore_case"] else 0)
    hits, skipped, truncated, cap = [], 0, False, job["line_chars"]
    for i, name in enumerate(job["files"]):
        if globs and not wanted(job["names"][i]):
            continue
        try:
            with open(name.encode("latin-1"), "rb") as f:
                data = f.read(job["max_bytes"] + 1)
        except OSError:
            data = None
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
    out = {"hits": hits, "skipped": skipped, "truncated": truncated}
sys.stdout.write(json.dumps(out))
"""


class SearchStop:
    """Lets an async caller stop a Grep or Glob that runs in a worker thread.

    The thread cannot be interrupted, but the child process doing the matching can: ``stop``
    kills it (at once, or as soon as it starts), and the search raises ToolError.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def started(self, child: subprocess.Popen[bytes]) -> None:
        """Called by the search with its child process."""
        with self._lock:
            self._child = child
            if self.stopped:
                child.kill()

    def stop(self) -> None:
        """Kill the search's child process, now or when it starts."""
        with self._lock:
            self.stopped = True
            if self._child is not None:
                self._child.kill()


def run_search(job: dict[str, Any], tool: str, stop: SearchStop | None, timeout: float) -> Any:
    """Run the regular expressions of ``job`` in a child process bounded by ``timeout``;
    see ``SearchStop``."""
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _SEARCH_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={},
    )
    if stop is not None:
        stop.started(child)
    try:
        out, err = child.communicate(json.dumps(job).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"{tool} was stopped after {timeout:g}s: the pattern makes the "
            "regular expression engine backtrack too much (nested repetition such as "
            "`(a+)+` or many `*`); simplify the pattern or narrow the path"
        ) from None
    finally:
        if child.poll() is None:  # timed out, or interrupted: never leave it running
            child.kill()
            child.communicate()
    if child.returncode != 0:
        if stop is not None and stop.stopped:
            raise ToolError(f"{tool} was cancelled")
        detail = err.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        raise ToolError(f"{tool} failed: {''.join(detail) or f'exit {child.returncode}'}")
    return json.loads(out)


def glob_parts(pattern: str) -> list[str]:
    """Check a glob pattern and expand one level of ``{a,b}`` alternatives."""
    if not pattern or not pattern.strip():
        raise ToolError("the glob pattern is empty; e.g. `**/*.py`")
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise ToolError(
            f"glob pattern `{pattern}` must be relative (no leading `/`, no `..`); "
            "pass the directory to search as `path`"
        )
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for alt in match.group(1).split(","):
        out.extend(glob_parts(head + alt + tail))
    return out


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for a glob over POSIX relative paths.

    ``**/`` matches zero or more directories, ``**`` anything, ``*`` and ``?`` stay inside one
    path segment, ``[...]`` is a character class.
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
        elif ch == "[":
            close = pattern.find("]", i + 2)
            if close == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = close + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ToolError(f"glob pattern `{pattern}` is not valid: {exc}") from None
