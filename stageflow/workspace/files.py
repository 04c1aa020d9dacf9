"""Opening workspace files for the file tools: regular files only, never blocking.

A FIFO opened for reading blocks until a writer comes, and opened for writing until a reader
comes: a Write to a named pipe in the worktree used to hang its worker thread for good. So
every open is ``O_NONBLOCK`` (a FIFO without a reader fails at once with ``ENXIO``; with one,
the open returns and ``fstat`` tells), ``O_NOFOLLOW`` (the path was resolved already: a link
appearing in between is refused) and ``O_NOCTTY``; then ``fstat`` must say regular file, or
the tool refuses saying what the path is. An existing special file is refused before it is
opened at all (opening some devices has effects).

``cancelled`` is the caller's stop flag: the file tools run in worker threads that a stage
timeout or cancel abandons, and a thread that is still before its write then writes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

from stageflow.errors import ToolError

__all__ = ["kind_of", "read_regular", "write_regular"]

_OPEN_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a message: "a named pipe (FIFO)", "a socket", ..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe, FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _refuse(shown: str, mode: int, tool: str) -> ToolError:
    if stat.S_ISDIR(mode):
        return ToolError(f"`{shown}` is a directory; give a file path (Glob lists directories)")
    return ToolError(
        f"`{shown}` is not a regular file ({kind_of(mode)}); {tool} works on regular files only"
    )


def _open_error(exc: OSError, shown: str, tool: str) -> ToolError:
    if exc.errno == errno.ENOENT:
        return ToolError(f"`{shown}` does not exist; use Glob to find the right path")
    if exc.errno == errno.ENXIO:  # a FIFO nobody reads
        return ToolError(
            f"`{shown}` is not a regular file (a named pipe, FIFO); {tool} works on regular "
            "files only"
        )
    if exc.errno == errno.ELOOP:
        return ToolError(f"`{shown}` became a symbolic link; {tool} does not follow it")
    if exc.errno == errno.EISDIR:
        return ToolError(f"`{shown}` is a directory; give a file path")
    return ToolError(f"{tool} cannot open `{shown}`: {exc.strerror or exc}")


def read_regular(path: Path, *, shown: str, tool: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``; ToolError for a special file, a missing one
    or one over ``limit`` bytes."""
    try:
        before = path.lstat()
    except FileNotFoundError:
        raise ToolError(f"`{shown}` does not exist; use Glob to find the right path") from None
    if not stat.S_ISREG(before.st_mode):
        raise _refuse(shown, before.st_mode, tool)
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(exc, shown, tool) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(shown, info.st_mode, tool)
        if info.st_size > limit:
            raise ToolError(
                f"`{shown}` is {info.st_size} bytes, over the {limit}-byte limit for "
                f"{tool}; use Grep to find the lines you need"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # it grew after fstat
        raise ToolError(f"`{shown}` is over the {limit}-byte limit for {tool}")
    return data


def write_regular(
    path: Path,
    data: bytes,
    *,
    shown: str,
    tool: str,
    cancelled: threading.Event | None = None,
) -> bool:
    """Replace (or create) the regular file ``path`` with ``data``; True if it existed.

    ToolError for a special file (never opened for writing when it is one already) and when
    ``cancelled`` is set before the write.
    """
    try:
        before = path.lstat()
    except FileNotFoundError:
        before = None
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise _refuse(shown, before.st_mode, tool)
    if cancelled is not None and cancelled.is_set():
        raise ToolError(f"{tool} of `{shown}` was cancelled before it wrote anything")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | _OPEN_FLAGS, 0o666)
    except OSError as exc:
        raise _open_error(exc, shown, tool) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(shown, info.st_mode, tool)
        if cancelled is not None and cancelled.is_set():
            if before is None:
                path.unlink(missing_ok=True)  # the open created it
            raise ToolError(f"{tool} of `{shown}` was cancelled before it wrote anything")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)
    return before is not None
