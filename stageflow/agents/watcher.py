"""The file watcher behind hot reload: one ``awatch`` over the definition and knowledge folders.

Folders are watched, not files, because editors save by writing a temporary file and renaming
it over the original (an inode change a file watch would lose). Watches are non-recursive: an
agent or template folder holds its definitions directly, knowledge folders are listed with their
sub-folders, and a folder that does not exist yet is covered by a watch on its nearest existing
parent, so nothing is ever created in the user's project and no parent is watched recursively
(``.stageflow`` also holds the state database and the runs' worktrees).

Each batch (``step`` ms without a new event, at most ``debounce`` ms) becomes ONE
``LiveDefinitions.apply``: editor temp, swap and backup files are filtered out, so an atomic save
(write temp, rename over) is one reload. When a watched folder or one of its parents appears or
goes, the watch is set up again over what exists now, and the folders concerned are listed again
once the new watch is in place, so files written in between are not missed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from watchfiles import Change, DefaultFilter, awatch

from stageflow.agents.live import LiveDefinitions, ReloadReport
from stageflow.workflows.catalog import TEMPLATE_SUFFIXES

log = logging.getLogger(__name__)

OnReload = Callable[[ReloadReport], Awaitable[None]]
DEFINITION_SUFFIXES = frozenset({".md", *TEMPLATE_SUFFIXES})
_TEMP_SUFFIXES = (".swp", ".swo", ".swx", ".tmp", ".temp", ".bak", ".orig", ".crdownload")
_SKIP_DIRS = frozenset(DefaultFilter.ignore_dirs) | {"worktrees"}
MAX_KNOWLEDGE_DIRS = 2000  # sub-folders of knowledge roots given a watch of their own


def is_temp_file(name: str) -> bool:
    """Editor temp, swap, lock and backup files: never a definition or a document."""
    return (
        name.startswith((".", "#", "flycheck_"))
        or name.endswith(("~", "#", "___"))  # emacs, JetBrains ``x.___jb_tmp___``
        or name.lower().endswith(_TEMP_SUFFIXES)
    )


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _nearest_existing(path: Path) -> Path:
    while not path.is_dir() and path.parent != path:
        path = path.parent
    return path


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Targets:
    """What to watch and which reported paths matter."""

    def __init__(self, dirs: Sequence[Path], knowledge_dirs: Sequence[Path]) -> None:
        self.defs = frozenset(_real(d) for d in dirs)
        self.knowledge = tuple(sorted({_real(d) for d in knowledge_dirs}))
        self.roots: frozenset[Path] = frozenset()

    def compute_roots(self) -> list[Path]:
        """Each folder that exists, else its nearest existing parent; knowledge folders with
        their sub-folders (dot-folders and tool caches skipped)."""
        roots = {_nearest_existing(d) for d in (*self.defs, *self.knowledge)}
        budget = MAX_KNOWLEDGE_DIRS
        for root in self.knowledge:
            if not root.is_dir():
                continue
            for here, subdirs, _ in os.walk(root):
                subdirs[:] = sorted(
                    d for d in subdirs if not d.startswith(".") and d not in _SKIP_DIRS
                )
                roots.update(Path(here) / d for d in subdirs[:budget])
                budget -= len(subdirs)
                if budget <= 0:
                    log.warning(
                        "knowledge folders: watching only the first %d sub-folders",
                        MAX_KNOWLEDGE_DIRS,
                    )
                    break
            if budget <= 0:
                break
        self.roots = frozenset(roots)
        return sorted(roots)

    def structural(self, change: Change, path: Path) -> bool:
        """A folder appeared or went that changes what must be watched."""
        if change == Change.modified:
            return False
        if any(_within(d, path) for d in (*self.defs, *self.knowledge)):
            return True  # a watched folder itself, or one of its parents
        if change == Change.deleted:
            return path in self.roots  # a watched knowledge sub-folder
        return self.in_knowledge(path) and path.is_dir() and not path.name.startswith(".")

    def in_knowledge(self, path: Path) -> bool:
        return any(root in path.parents for root in self.knowledge)

    def keep(self, change: Change, raw: str) -> bool:
        """The ``watch_filter``: definition files, knowledge Markdown, and folder changes."""
        path = Path(raw)
        if self.structural(change, path):
            return True
        if is_temp_file(path.name):
            return False
        if path.parent in self.defs:
            return path.suffix.lower() in DEFINITION_SUFFIXES
        return self.in_knowledge(path) and path.suffix.lower() == ".md"


async def watch(
    live: LiveDefinitions,
    dirs: Sequence[Path],
    *,
    on_reload: OnReload,
    knowledge_dirs: Sequence[Path] = (),
    stop: anyio.Event | None = None,
    step_ms: int = 30,
    debounce_ms: int = 300,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch ``dirs`` (agent and template folders) and ``knowledge_dirs`` until ``stop`` is set
    or the task is cancelled; apply each batch of changes to ``live`` and hand the report to
    ``on_reload`` (only when it says something). ``task_status.started()`` is called once the
    first watch is in place, so a change made after ``await tg.start(watch, ...)`` is seen.

    A failing ``apply`` or ``on_reload`` is logged and the watcher goes on.
    """
    targets = _Targets(dirs, knowledge_dirs)
    halt = anyio.Event()  # ours: awatch sets its stop event when cancelled
    lock = anyio.Lock()  # one apply + on_reload at a time (the re-list task runs beside)

    async def reload(paths: Iterable[Path]) -> None:
        batch = sorted(set(paths))
        async with lock:
            try:
                report = await anyio.to_thread.run_sync(live.apply, batch)
            except Exception:
                log.exception("hot reload: applying %d changed path(s) failed", len(batch))
                return
            if report.empty:
                return
            try:
                await on_reload(report)
            except Exception:
                log.exception("hot reload: on_reload failed")

    async def relay_stop() -> None:
        # awatch waits in a worker thread that only looks at ``halt`` every ``step`` ms;
        # cancellation alone would wait for the thread's 5 s timeout
        try:
            if stop is None:
                await anyio.sleep_forever()
            else:
                await stop.wait()
        finally:
            halt.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay_stop)
        await _watch_loop(targets, halt, tg, reload, step_ms, debounce_ms, task_status)
        tg.cancel_scope.cancel()


async def _watch_loop(
    targets: _Targets,
    halt: anyio.Event,
    tg: TaskGroup,
    reload: Callable[[Iterable[Path]], Coroutine[Any, Any, None]],
    step_ms: int,
    debounce_ms: int,
    task_status: TaskStatus[None],
) -> None:
    started = False
    relist: set[Path] = set()
    while not halt.is_set():
        roots = targets.compute_roots()
        if relist:
            # Changes made while no watch was in place: list the folders again. This task
            # starts only once we wait inside awatch, i.e. after the new watch is set up.
            tg.start_soon(reload, _expand(relist | targets.defs, targets))
            relist = set()
        if not started:
            started = True
            # nothing below awaits before awatch has set up its watch, so whoever waits for
            # ``started`` runs only after that
            task_status.started()
        log.debug("watching %d folder(s)", len(roots))
        try:
            async with aclosing(
                awatch(
                    *roots,
                    watch_filter=targets.keep,
                    step=step_ms,
                    debounce=debounce_ms,
                    stop_event=halt,
                    recursive=False,
                )
            ) as batches:
                async for changes in batches:
                    paths = {Path(p) for _, p in changes}
                    relist = {Path(p) for c, p in changes if targets.structural(c, Path(p))}
                    if paths - relist:
                        await reload(paths - relist)
                    if relist:
                        break  # watch again over the folders that exist now
        except OSError:
            if all(root.is_dir() for root in roots):
                raise  # e.g. the system's limit of watches: hot reload cannot work
            # a folder went between listing and watching it: watch what exists now
            log.debug("a watched folder disappeared; watching again", exc_info=True)
            relist = set(roots)


def _expand(folders: set[Path], targets: _Targets) -> set[Path]:
    """What to re-list after a new watch: the folders themselves (``apply`` lists definition
    folders; a knowledge folder that went is passed on as it is) plus the Markdown files of every
    knowledge folder at or under them, which no watch saw being written."""
    out = set(folders)
    for folder in folders:
        if not folder.is_dir():
            continue
        inside = [k for k in targets.knowledge if _within(k, folder)]
        if targets.in_knowledge(folder):
            inside.append(folder)
        for root in inside:
            if root.is_dir():
                out.update(
                    p
                    for p in root.rglob("*.md")
                    if p.is_file() and not any(is_temp_file(x) for x in p.relative_to(root).parts)
                )
    return out
