"""``Scheduler``: owns the leases of the runs this process executes and drives them.

One scheduler per process. ``drive(run_id)`` executes one run in the foreground (the CLI);
``serve()`` adopts every active run that no live process holds and keeps adopting (the MCP server
and ``stageflow resume --all``). A heartbeat renews our leases; a run whose lease we lose is
dropped at once without writing, and its new owner records our attempts as interrupted.
With an ``agents`` provider (hot reload), every new attempt uses the agent's current definition;
an attempt in flight keeps the one it started with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from stageflow.engine.attempt_inputs import AgentProvider
from stageflow.engine.choice import Chooser
from stageflow.engine.driver import EventSink, RunDriver, Until
from stageflow.engine.gitops import GitLanes
from stageflow.engine.leases import owner_is_dead
from stageflow.engine.orchestration import Orchestration
from stageflow.engine.runner import Runner
from stageflow.engine.slots import Slots
from stageflow.engine.state import RunState, fold
from stageflow.errors import InvalidState
from stageflow.ids import new_owner_id
from stageflow.store.store import Store

log = logging.getLogger(__name__)


class RunBusy(InvalidState):
    """The run is executed by another live process."""

    def __init__(self, run_id: str, owner: str | None) -> None:
        super().__init__(
            f"run {run_id} is being executed by another process ({owner}); "
            "its progress shows in `stageflow status`"
        )
        self.owner = owner


class Scheduler:
    """Executes runs of one project in this process."""

    def __init__(
        self,
        store: Store,
        runner: Runner,
        *,
        max_concurrent_agents: int = 4,
        lease_seconds: float = 15.0,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        sink: EventSink | None = None,
        poll_interval: float = 0.25,
        agents: AgentProvider | None = None,
        chooser: Chooser | None = None,
        lanes: GitLanes | None = None,
        orchestration: Orchestration | None = None,
    ) -> None:
        self.store = store
        self.orchestration = orchestration  # answers failure triage and rework routing
        self.runner = runner
        self.chooser = chooser  # decides agent and model where a stage leaves a choice
        self.agents = agents  # each new attempt uses the agent's current definition
        self.lanes = lanes  # git worktrees per lane, commits and merges (None: no git work)
        self.slots = Slots(max_concurrent_agents)
        self.lease_seconds = lease_seconds
        self.owner = owner or new_owner_id()
        self.clock = clock
        self.sink = sink
        self.poll_interval = poll_interval
        self.drivers: dict[str, RunDriver] = {}
        self._unsubscribe = store.on_append(self._appended)
        self._active: set[str] = set()

    def _appended(self, run_id: str, holder: str | None) -> None:
        """A command (approve, cancel, ...) went through our Store: wake that run's driver."""
        if holder == self.owner:
            return  # our own driver's write
        driver = self.drivers.get(run_id)
        if driver is not None:
            driver.notice_external()

    def close(self) -> None:
        """Stop listening to the store (the scheduler is not used any more)."""
        self._unsubscribe()

    async def _claim(self, run_id: str) -> bool:
        row = await self.store.get_run(run_id)
        now = self.clock()
        steal = (
            row.owner
            if row.owner and row.owner != self.owner and owner_is_dead(row.owner)
            else None
        )
        return await self.store.leases.acquire(
            run_id, self.owner, ttl=self.lease_seconds, now=now, steal_from=steal
        )

    async def drive(
        self, run_id: str, *, until: Until = "idle", stop: anyio.Event | None = None
    ) -> RunState:
        """Execute one run in the foreground; raises ``RunBusy`` if another process has it."""
        if run_id in self._active:
            raise RunBusy(run_id, self.owner)
        self._active.add(run_id)
        try:
            return await self._drive(run_id, until, stop)
        finally:
            self._active.discard(run_id)

    async def _drive(self, run_id: str, until: Until, stop: anyio.Event | None) -> RunState:
        if not await self._claim(run_id):
            row = await self.store.get_run(run_id)
            raise RunBusy(run_id, row.owner)
        state = fold(await self.store.load_events(run_id))
        driver = RunDriver(
            self.store,
            state,
            self.runner,
            self.slots,
            owner=self.owner,
            clock=self.clock,
            sink=self.sink,
            poll_interval=self.poll_interval,
            agents=self.agents,
            chooser=self.chooser,
            lanes=self.lanes,
            orchestration=self.orchestration,
        )
        self.drivers[run_id] = driver
        done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, done)
                try:
                    state = await driver.drive(until, stop)
                finally:
                    done.set()
            return state
        finally:
            self.drivers.pop(run_id, None)
            with anyio.CancelScope(shield=True):
                await self.store.leases.release(run_id, self.owner)

    async def _heartbeat(self, done: anyio.Event) -> None:
        while not done.is_set():
            with anyio.move_on_after(self.lease_seconds / 3):
                await done.wait()
            if done.is_set():
                return
            held = set(
                await self.store.leases.renew(self.owner, ttl=self.lease_seconds, now=self.clock())
            )
            for run_id, driver in list(self.drivers.items()):
                if run_id not in held:
                    driver.lose_lease()

    async def serve(self, stop: anyio.Event, *, until: Until = "terminal") -> None:
        """Adopt active runs nobody live is executing, until ``stop`` is set."""
        async with anyio.create_task_group() as tg:
            while not stop.is_set():
                for row in await self.store.active_run_ids():
                    if row in self._active:
                        continue
                    tg.start_soon(self._adopt, row, stop, until)
                with anyio.move_on_after(max(self.poll_interval, self.lease_seconds / 3)):
                    await stop.wait()
            tg.cancel_scope.cancel()

    async def _adopt(self, run_id: str, stop: anyio.Event, until: Until) -> None:
        try:
            await self.drive(run_id, until=until, stop=stop)
        except RunBusy:
            return
        except Exception:  # one broken run must not stop the others
            log.exception("run %s: driver failed", run_id)
