"""Glob and Grep matching in a killable child process (``search_child``).

Python's ``re`` holds the GIL while it backtracks and cannot be interrupted, so a pattern such
as ``(a+)+$`` would stall the whole server, and expanding ``{a,b}`` groups is exponential in
their number; so the child does all of it (brace expansion, bounded; glob translation; regex
compilation and matching) and can be killed, on a timeout or when the caller is cancelled
(``SearchStop``). A problem with the model's pattern comes back as a ToolError.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from stageflow.errors import ToolError

__all__ = ["CHILD", "SearchStop", "run_search"]


# the child script: stdlib only, run by path without site-packages (see its docstring)
CHILD = Path(__file__).with_name("search_child.py")


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
    """Run ``job`` (globs, regular expressions, files) in a child process bounded by
    ``timeout``; see ``SearchStop``. A pattern the child refuses raises ToolError saying why."""
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", str(CHILD)],
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
    answer = json.loads(out)
    if isinstance(answer, dict) and "error" in answer:
        raise ToolError(f"{tool}: {answer['error']}")
    return answer
