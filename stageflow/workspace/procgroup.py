"""Child process groups: read a program's output, stop it and everything it started.

Command stages, Bash and ``claude -p`` each start their program as the leader of its own
process group (``start_new_session=True``), so stopping it reaches its children too. One copy
of this logic serves all three.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

__all__ = ["collect", "group_alive", "kill_group", "signal_group", "stop_group"]

log = logging.getLogger(__name__)


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the group; False when no process of the group is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("cannot signal process group %s", pgid)
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether a live process remains in the group.

    Zombies do not count: orphans killed with the group are reparented to init, which may reap
    them lazily, and waiting for that would turn every kill into a full grace period. Where
    ``/proc`` is missing, fall back to ``killpg(pgid, 0)``, which counts zombies.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


async def collect(
    process: Process,
    add: Callable[[bytes], None],
    *,
    drain_grace: float,
    kill_leftovers: bool = False,
) -> None:
    """Feed ``process``'s stdout to ``add`` until it exits and its pipe is drained.

    A background child may still hold the pipe open after the program exits, so draining waits
    at most ``drain_grace``; with ``kill_leftovers`` such children are killed first.
    """
    drained = anyio.Event()

    async def pump(stream: ByteReceiveStream) -> None:
        try:
            async for chunk in stream:
                add(chunk)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        drained.set()

    async with anyio.create_task_group() as tg:
        if process.stdout is not None:
            tg.start_soon(pump, process.stdout)
        else:
            drained.set()
        await process.wait()
        if kill_leftovers:
            signal_group(process.pid, signal.SIGKILL)
        with anyio.move_on_after(drain_grace):
            await drained.wait()
        tg.cancel_scope.cancel()


async def stop_group(process: Process, *, grace: float) -> None:
    """SIGTERM the process group, wait ``grace``, SIGKILL what is left, reap the leader."""
    pgid = process.pid  # start_new_session: the program leads its own group
    if signal_group(pgid, signal.SIGTERM):
        with anyio.move_on_after(grace):
            # the OS offers no event for "process group is empty", so poll briefly
            while group_alive(pgid):  # noqa: ASYNC110
                await anyio.sleep(0.02)
        signal_group(pgid, signal.SIGKILL)
    if process.returncode is None:
        with anyio.move_on_after(grace):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    await process.aclose()


async def kill_group(process: Process) -> None:
    """SIGKILL whatever is left of the process group at once and reap the leader."""
    signal_group(process.pid, signal.SIGKILL)
    if process.returncode is None:
        process.kill()
        await process.wait()
    await process.aclose()
