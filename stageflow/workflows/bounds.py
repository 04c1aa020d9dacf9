"""Bounds on what a template or agent file may be, so a hostile file costs little to refuse.

A template or agent file is read by the CLI, the MCP server at start-up and on every hot reload,
and its values are copied into tool results and the run's event log. So a file may not be
larger than ``MAX_FILE_BYTES``, nest lists and mappings deeper than ``MAX_DEPTH`` (parsers and
serialisers recurse), or use YAML aliases that add more than ``MAX_ALIAS_NODES`` nodes or
``MAX_ALIAS_CHARS`` characters of text once expanded (the "billion laughs": a 1 KB file whose
aliases expand to gigabytes as soon as anything walks or serialises it). A template may have at
most ``MAX_STAGES`` stages. Every bound is refused with a ``LimitExceeded`` that says which
bound, by how much, and where (line, column, document path).
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stageflow.errors import Problem
from stageflow.workflows.locations import DocPath, dotted

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the built-in templates are 1-4 KB, a long agent prompt 50 KB
MAX_DEPTH = 64  # a template needs about 6 levels; far below Python's recursion limit
MAX_ALIAS_NODES = 10_000  # nodes that aliases may add once expanded, in all
MAX_ALIAS_CHARS = 1_000_000  # characters of text that aliases may add, in all
MAX_STAGES = 1_000


class LimitExceeded(ValueError):
    """A file passed one of the bounds; ``line`` and ``column`` are 1-based when known.

    ``message`` says which bound, ``detail`` by how much; ``str()`` joins them with the column.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        path: DocPath = (),
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        at = f" at column {self.column}" if self.column is not None else ""
        return f"{self.message}{at}: {self.detail}" if self.detail else f"{self.message}{at}"

    def shown_path(self, keep: int = 8) -> str | None:
        """The dotted path, its first ``keep`` parts only (a deep one is hundreds long)."""
        text = dotted(self.path[:keep])
        return (text + "...") if len(self.path) > keep else (text or None)


def size_text(size: int) -> str:
    """``1048576`` -> ``1.0 MiB``; small sizes in bytes."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1 << 20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1 << 20):.1f} MiB"


def too_large(size: int, what: str, limit: int = MAX_FILE_BYTES) -> LimitExceeded:
    """The error for a file of ``size`` bytes over ``limit``."""
    return LimitExceeded(
        "the file is too large",
        detail=f"{size_text(size)} ({size} bytes); {what} may be at most {size_text(limit)}",
    )


def read_bounded(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, refusing anything but a regular file of at most ``limit`` bytes.

    The size is checked before reading (a 10 GB file is never read) and again on what was read
    (the file may grow meanwhile); a FIFO or device is refused, never opened, so reading cannot
    block. ``OSError`` passes through for the caller's "cannot read" message.
    """
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise LimitExceeded("not a regular file", detail=f"{what} must be plain files")
    if info.st_size > limit:
        raise too_large(info.st_size, what, limit)
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise too_large(len(data), what, limit)
    return data


def check_text_size(text: str, what: str, limit: int = MAX_FILE_BYTES) -> None:
    """Raise ``LimitExceeded`` when ``text`` encodes to more than ``limit`` UTF-8 bytes."""
    if len(text) * 4 <= limit:  # a character is at most 4 bytes: nothing to count
        return
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        raise too_large(size, what, limit)


def too_deep(path: DocPath, limit: int = MAX_DEPTH) -> LimitExceeded:
    """The error for data nested past ``limit`` levels at ``path``."""
    return LimitExceeded(
        "nested too deeply", path=path, detail=f"more than {limit} levels of lists and mappings"
    )


def deepest_path(data: Any, limit: int = MAX_DEPTH) -> DocPath | None:
    """The path of the first value nested more than ``limit`` levels deep, else ``None``.

    Iterative (a stack, not recursion), so it is safe on any data; it stops at the first hit.
    """
    todo: list[tuple[Any, DocPath]] = [(data, ())]
    while todo:
        value, path = todo.pop()
        if not isinstance(value, dict | list):
            continue
        if len(path) >= limit:
            return path
        todo.extend((child, (*path, key)) for key, child in _items(value))
    return None


def _items(value: dict[Any, Any] | list[Any]) -> Iterator[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return ((str(k), v) for k, v in value.items())
    return enumerate(value)


def unexpected_problem(path: Path, exc: Exception) -> Problem:
    """A file whose loading raised something other than a ``SpecError``, as one problem.

    This is a bug in stageflow, not in the file; but one file must never take down the server
    or hide the other files, so the loaders of many files turn it into a problem naming the
    file, and the traceback goes to the log (stderr).
    """
    log.error("loading %s failed unexpectedly", path, exc_info=exc)
    reason = f"{type(exc).__name__}: {exc}"
    return Problem(f"could not be loaded ({reason}); please report this", str(path))
