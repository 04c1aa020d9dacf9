"""``ProfileUpdater``: keeps the profile tables in step with the runs' logs.

The tables follow the logs, not the other way round: for each run, ``profile_progress`` says up
to which entry its log has been read, and ``sync_run`` folds the entries after it (from a state
kept in memory for runs seen before, else from the start of the log), turns what they complete
into samples (``tap.observe``) and records samples, summaries and the new position in one
transaction. So:

- **as attempts finish**, the scheduler's event sink marks the run and the background task (or
  ``drain``, in the CLI) syncs it: the profiles change within moments;
- **nothing is lost**: a process that dies before syncing leaves the position behind, and the
  next ``catch_up`` (at server start, and when a CLI command ends) reads the rest; a decision
  appended by another process is read like any other entry;
- **rebuild** folds every log from the start and replaces the tables in one transaction; it
  gives the same tables as the incremental path (a test holds them equal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus

from stageflow import events as ev
from stageflow.engine.state import RunState, apply, initial_state
from stageflow.errors import StageflowError
from stageflow.learning.book import BookCache
from stageflow.learning.stats import aggregate
from stageflow.learning.tap import observe
from stageflow.models.routing import ModelRoutes
from stageflow.store.profiles import SampleRow
from stageflow.store.store import Store

__all__ = ["ProfileUpdater", "RebuildReport"]

log = logging.getLogger(__name__)

SHUTDOWN_DRAIN_S = 5.0
_WATCHED = (ev.AttemptFinished, ev.ApprovalDecided)


@dataclass(frozen=True)
class RebuildReport:
    runs: int
    samples: int
    profiles: int
    skipped: tuple[str, ...] = ()  # runs whose log could not be read


class ProfileUpdater:
    """See the module docstring."""

    def __init__(self, store: Store, routes: ModelRoutes, cache: BookCache | None = None) -> None:
        self.store = store
        self.routes = routes
        self.cache = cache
        self._states: dict[str, RunState] = {}  # run -> its state at the position read
        self._dirty: set[str] = set()
        self._wake: anyio.Event | None = None
        self._lock: anyio.Lock | None = None

    def _resolve(self, name: str | None) -> str:
        return self.routes.resolve(name)

    def sink(self, env: ev.Envelope, state: RunState) -> None:
        """The engine ``EventSink``: note runs with a finished attempt or a decision."""
        if isinstance(env.event, _WATCHED):
            self._dirty.add(env.run_id)
            if self._wake is not None:
                self._wake.set()

    def _guard(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def sync_run(self, run_id: str) -> list[SampleRow]:
        """Read ``run_id``'s log past its position; returns the samples recorded."""
        if self.store.read_only:
            return []
        async with self._guard():
            return await self._sync(run_id)

    async def _sync(self, run_id: str) -> list[SampleRow]:
        profiles = self.store.profiles
        read = await profiles.progress(run_id)
        state = self._states.get(run_id)
        if state is not None and state.seq == read:
            envs = await self.store.load_events(run_id, after_seq=read)
        else:
            state = None
            envs = await self.store.load_events(run_id)
        if not envs:
            return []
        samples: list[SampleRow] = []
        for env in envs:
            state = initial_state(run_id, env) if state is None else apply(state, env)
            if env.seq > read:
                samples.extend(observe(env, state, self._resolve))
        assert state is not None
        if state.seq > read:
            generation = await profiles.record(samples, {run_id: state.seq}, aggregate)
            if self.cache is not None:
                self.cache.wrote(samples, generation)
        if state.ended is not None:
            self._states.pop(run_id, None)  # an ended run changes little more: fold it anew
        else:
            self._states[run_id] = state
        return samples

    async def catch_up(self) -> int:
        """Sync every run whose log goes past its position; returns the samples recorded.
        A run whose log cannot be read is skipped (with a warning), never fatal."""
        if self.store.read_only:
            return 0
        total = 0
        for run_id, _last, _read in await self.store.profiles.behind():
            self._dirty.discard(run_id)
            try:
                total += len(await self.sync_run(run_id))
            except StageflowError as exc:
                log.warning("profiles: run %s skipped: %s", run_id, exc)
        return total

    async def drain(self) -> int:
        """Sync the runs the sink marked, then anything else behind."""
        total = 0
        while self._dirty:
            run_id = self._dirty.pop()
            try:
                total += len(await self.sync_run(run_id))
            except StageflowError as exc:
                log.warning("profiles: run %s skipped: %s", run_id, exc)
        return total + await self.catch_up()

    async def run(
        self, stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Catch up, then sync marked runs as they come, until ``stop`` is set."""
        self._wake = anyio.Event()
        task_status.started()
        try:
            while not stop.is_set():
                try:
                    await self.drain()
                except Exception:  # the profiles are worth less than the server staying up
                    log.warning("profiles: update failed", exc_info=True)
                with anyio.move_on_after(1.0):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_DRAIN_S):
                try:
                    await self.drain()
                except Exception:
                    log.warning("profiles: final update failed", exc_info=True)

    async def rebuild(self) -> RebuildReport:
        """Replace the profile tables with what every run's log says (one transaction)."""
        samples: list[SampleRow] = []
        progress: dict[str, int] = {}
        skipped: list[str] = []
        async with self._guard():
            run_ids = await self.store.profiles.run_ids()
            for run_id in run_ids:
                try:
                    envs = await self.store.load_events(run_id)
                except StageflowError as exc:
                    log.warning("profiles: run %s not rebuilt: %s", run_id, exc)
                    skipped.append(run_id)
                    continue
                samples.extend(_replay(run_id, envs, self._resolve))
                if envs:
                    progress[run_id] = envs[-1].seq
            generation = await self.store.profiles.replace_all(samples, progress, aggregate)
            self._states.clear()
            if self.cache is not None:
                self.cache.invalidate()
            log.info("profiles rebuilt from %d runs (generation %d)", len(run_ids), generation)
        keys = {s.key for s in samples}
        return RebuildReport(len(run_ids), len(samples), len(keys), tuple(skipped))


def _replay(
    run_id: str, envs: Sequence[ev.Envelope], resolve: Callable[[str | None], str]
) -> list[SampleRow]:
    """Every sample of one run's whole log, as the live path would have recorded them."""
    state: RunState | None = None
    out: list[SampleRow] = []
    for env in envs:
        state = initial_state(run_id, env) if state is None else apply(state, env)
        out.extend(observe(env, state, resolve))
    return out
