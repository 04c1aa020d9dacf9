"""``RunDriver``: performs one run's plan durably while this process holds its lease.

Loop: fold new events -> ``next_actions`` -> append decisions in one transaction -> launch
attempts (``AttemptStarted`` is committed before the runner is called) -> wait for an attempt to
finish, a timer, or a change made by another process (git work: ``gitops``). Every transition
is committed before it takes effect; a crash at any point leaves a log to resume from.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from stageflow import events as ev
from stageflow.engine.asking import Ask
from stageflow.engine.attempt_inputs import AgentProvider, AttemptInputs, Chooser
from stageflow.engine.gitops import GitLanes, GitOps
from stageflow.engine.metering import RunMeters, ledger_usage
from stageflow.engine.orchestration import Orchestration, Questions
from stageflow.engine.planner import StartAttempt, next_actions
from stageflow.engine.recording import finished_event
from stageflow.engine.runner import AttemptRequest, AttemptResult, Runner, StageJournal
from stageflow.engine.runner_call import call_runner
from stageflow.engine.slots import HeldSlot, Slots
from stageflow.engine.state import RunState, apply, preview
from stageflow.errors import (
    BudgetExceeded,
    ConcurrencyConflict,
    LeaseLost,
    ModelError,
    RunFailure,
    StageTimeout,
)
from stageflow.store.store import NewArtifact, RunSummary, Store

log = logging.getLogger(__name__)

Until = Literal["idle", "terminal"]
EventSink = Callable[[ev.Envelope, RunState], None]


def summarize(state: RunState) -> RunSummary:
    """The projection columns of the runs table."""
    return RunSummary(status=state.status, spent_usd=state.spent_usd, budget_usd=state.budget_usd)


class RunDriver:
    """Drives one run; create through ``Scheduler``."""

    def __init__(
        self,
        store: Store,
        state: RunState,
        runner: Runner,
        slots: Slots,
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
        sink: EventSink | None = None,
        poll_interval: float = 0.25,
        agents: AgentProvider | None = None,
        chooser: Chooser | None = None,
        lanes: GitLanes | None = None,
        orchestration: Orchestration | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.runner = runner
        self.slots = slots
        self.owner = owner
        self.clock = clock
        self.sink = sink
        self.poll_interval = poll_interval
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._stopping = False
        self._lease_lost = False
        self._data_version: int | None = None
        self._checked_at = 0.0
        self._wake_at: float | None = None
        self._tg: TaskGroup | None = None
        self._settled_seq: int | None = None
        self._external = False
        self._refused = False
        self._queued: list[tuple[list[ev.Event], list[NewArtifact], HeldSlot | None]] = []
        self._meters = RunMeters(store, state.run_id, lambda: self.state, clock)  # in flight
        # what attempts start with: agent definitions, artifact texts (cached)
        self._inputs = AttemptInputs(store, state.run_id, agents, owner, chooser, self._meters)
        self._git = GitOps(lanes, state, self._advance, self._spawn)  # its git work in flight
        # the orchestrator's questions (engine.asking): asked in tasks, answered into the log
        self._questions = Questions(orchestration, self._meters, self._advance)
        self._asks: list[Ask] = []

    def _spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn)

    def wake(self) -> None:
        """Look at the plan again soon (a slot was freed, or something changed)."""
        self._wake.set()

    def notice_external(self) -> None:
        """Another writer in this process appended to the run (PRAGMA data_version does not
        see our own connection's writes): refresh and plan again."""
        self._external = True
        self._wake.set()

    def lose_lease(self) -> None:
        """Another process owns the run now: stop at once, write nothing more."""
        self._lease_lost = True
        self._stopping = True
        for scope in list(self._scopes.values()):
            scope.cancel()
        self._wake.set()

    # -- persistence -------------------------------------------------------------------------

    def _absorb(self, envelopes: Sequence[ev.Envelope]) -> None:
        for env in envelopes:
            self.state = apply(self.state, env)
            if self.sink is not None:
                self.sink(env, self.state)

    async def refresh(self) -> bool:
        """Apply events appended by other processes; True if there were any."""
        new = await self.store.load_events(self.state.run_id, after_seq=self.state.seq)
        self._absorb(new)
        return bool(new)

    async def _advance(
        self,
        inputs: Sequence[ev.Event] = (),
        artifacts: Sequence[NewArtifact] = (),
        *,
        free: HeldSlot | None = None,
    ) -> bool:
        """Commit ``inputs`` (e.g. an attempt's result) together with every decision the
        planner makes on top of them and the ``attempt_started`` of every stage it can start,
        in ONE transaction; then launch those attempts. True if anything was committed.

        One transaction per step of the run keeps the log consistent (a start is never
        recorded without the decisions that led to it) and keeps fsyncs to about one per stage.
        """
        # Group commit: results arriving during another commit go out together in the next one
        if inputs or artifacts or free is not None:
            self._queued.append((list(inputs), list(artifacts), free))
        async with self._lock:
            queued, self._queued = self._queued, []
            batch: list[ev.Event] = []
            arts: list[NewArtifact] = []
            for q_events, q_arts, q_slot in queued:
                batch.extend(q_events)
                arts.extend(q_arts)
                if q_slot is not None:
                    # its slot goes to the stages its result unblocks, decided under this lock
                    q_slot.release()
            # results taken from the queue must reach the log even if this caller is cancelled
            committed = False
            with anyio.CancelScope(shield=bool(batch)):
                committed = await self._commit_plan(batch, arts)
            return committed

    async def _commit_plan(self, batch: list[ev.Event], arts: list[NewArtifact]) -> bool:
        """Plan on top of ``batch``, commit, launch; the caller holds the lock."""
        while True:
            if self._lease_lost:
                raise LeaseLost(f"run {self.state.run_id}: lease lost")
            await self._inputs.prepare(self.state)  # the chooser's data, if the run has choices
            now = self.clock()
            events, state, starts, cancels, wake_at = self._plan(list(batch), now)
            self._wake_at = wake_at
            if not events:
                self._cancel(cancels)  # the log already says why (run ended or failing)
                self._settled_seq = None if self._refused else self.state.seq
                self._questions.launch(self._tg, self._asks)
                return False
            try:
                envs = await self.store.append(
                    self.state.run_id,
                    events,
                    expect_seq=self.state.seq,
                    actor=self.owner,
                    at=now,
                    summary=summarize(state),
                    artifacts=arts,
                    holder=self.owner,
                )
            except LeaseLost:
                self._release(starts)
                self.lose_lease()  # stop the other attempts now: their new owner reruns them
                raise
            except ConcurrencyConflict:
                self._release(starts)
                await self.refresh()  # another process wrote first: plan again on its state
                continue
            except BaseException:
                self._release(starts)
                raise
            # ``state`` was previewed with the same events and time; only the chain differs
            self.state = replace(state, seq=envs[-1].seq, head_hash=envs[-1].hash)
            for art in arts:  # before launching: the stages started now read these
                self._inputs.remember(art.stage, art.name, art.version, art.content)
            self._settled_seq = None if self._refused else self.state.seq
            self._cancel(cancels)  # only now that the decision behind it is in the log
            self._git.launch(self.state)  # a git operation the step decided
            if self.sink is not None:
                for env in envs:
                    self.sink(env, self.state)
            for e in batch:  # their spend is in the state now: stop counting it as live
                if isinstance(e, ev.AttemptFinished):
                    self._meters.close(e.stage, e.attempt)
            for start in starts:
                # meters exist from the commit on, so attempts started together see each other
                self._meters.open(start, self._inputs.agent_of(self.state, start))
                scope = anyio.CancelScope()
                self._scopes[start.stage] = scope
                assert self._tg is not None
                self._tg.start_soon(self._attempt, start, scope)
            self._questions.launch(self._tg, self._asks)
            self._wake.set()
            return True

    def _settled(self) -> bool:
        """True when the last plan already covered this exact state and no timer is due:
        planning again would find nothing (saves one planner pass per stage)."""
        if self._settled_seq != self.state.seq:
            return False
        return self._wake_at is None or self.clock() < self._wake_at

    def _cancel(self, stages: Sequence[str]) -> None:
        for sid in stages:
            scope = self._scopes.get(sid)
            if scope is not None:
                scope.cancel()

    def _release(self, starts: Sequence[StartAttempt]) -> None:
        for _ in starts:
            self.slots.release()

    def _plan(
        self, events: list[ev.Event], now: float
    ) -> tuple[list[ev.Event], RunState, list[StartAttempt], list[str], float | None]:
        """Fold the planner's decisions to a fixpoint on a preview of the state, then add the
        starts that free slots allow. Pure apart from taking slots."""
        state = preview(self.state, events, at=now)
        cancels: list[str] = []
        limit = 4 * len(state.stages) + 16  # decisions always make progress; this is a guard
        for _ in range(limit):
            plan = next_actions(state, now, ask=self._questions.kinds)
            self._asks = plan.questions
            cancels.extend(plan.cancel)
            if not plan.decisions:
                break
            events.extend(plan.decisions)
            state = preview(state, plan.decisions, at=now)
        else:
            log.error("run %s: planner did not settle; committing what it decided", state.run_id)
            return events, state, [], cancels, None
        starts: list[StartAttempt] = []
        self._refused = False
        if not self._stopping:
            for start in plan.starts:
                if not self.slots.try_acquire(self):
                    self._refused = True
                    break
                started = self._inputs.started_event(state, start)
                events.append(started)
                state = preview(state, [started], at=now)
                starts.append(start)
        return events, state, starts, cancels, plan.wake_at

    # -- the loop ----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Mark attempts left running by a dead owner (or by our own crash) as interrupted."""
        now = self.clock()
        stale: list[ev.Event] = []
        running = self.state.running()
        ledger = await self.store.ledger.list(self.state.run_id) if running else []
        for sid in running:
            current = self.state.stages[sid].current
            started = current.started_at if current is not None else now
            attempt = self.state.stages[sid].attempt
            # what the dead attempt had already spent is in the ledger: count it
            spent = [r for r in ledger if r.stage == sid and r.attempt == attempt]
            stale.append(
                ev.AttemptFinished(
                    stage=sid,
                    attempt=attempt,
                    outcome="interrupted",
                    error="the process running this attempt stopped",
                    duration_s=round(max(0.0, now - started), 6),  # until we noticed
                    usage=ledger_usage(spent),
                    model=spent[-1].model if spent else None,
                )
            )
        previous = self.state.owner
        events: list[ev.Event] = [*stale, *self._git.opening(self.state)]
        if previous != self.owner and self.state.ended is None:
            events.insert(0, ev.LeaseTaken(owner=self.owner, previous_owner=previous))
        if events:
            await self._advance(events)

    def _idle(self) -> bool:
        """Nothing runs and nothing will start without a human (or another process)."""
        st = self.state
        # running, or runnable soon: attempts, git work or questions in flight
        if self._scopes or self._refused or self._git.busy or self._questions.busy:
            return False
        if st.ended is not None or st.paused:  # paused: retry timers do not fire either
            return True
        return st.status == "waiting"  # (a stage backing off makes the status "running")

    async def drive(self, until: Until = "idle", stop: anyio.Event | None = None) -> RunState:
        """Run until the run ends (``terminal``) or needs a human with nothing running
        (``idle``), or ``stop`` is set (attempts in flight are then recorded as interrupted)."""
        self._data_version = await self.store.data_version()
        self._checked_at = self.clock()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self.recover()
                await self._loop(until, stop)
            except LeaseLost:
                log.warning(
                    "run %s: lease lost to another process; stopped driving", self.state.run_id
                )
            finally:
                self._stopping = True  # attempts still in flight are recorded as interrupted
                for scope in list(self._scopes.values()):
                    scope.cancel()
                self._questions.cancel()  # unanswered: asked again by the next owner
        self._tg = None
        return self.state

    async def _loop(self, until: Until, stop: anyio.Event | None) -> None:
        while True:
            if stop is not None and stop.is_set():
                return
            self._wake = anyio.Event()  # before planning, so no wake-up after it is lost
            self._git.launch(self.state)  # one left in flight by a process that died
            if not self._settled() and await self._advance():
                continue
            if self.state.ended is not None and not self._scopes:
                return
            if until == "idle" and self._idle():
                return
            await self._wait(self._wake_at, stop)

    async def _wait(self, wake_at: float | None, stop: anyio.Event | None) -> None:
        timeout = self.poll_interval
        if wake_at is not None:
            timeout = max(0.0, min(timeout, wake_at - self.clock()))
        with anyio.move_on_after(timeout):
            await self._wake.wait()
        if stop is not None and stop.is_set():
            return
        # Other processes' writes (approvals, cancels) are seen through PRAGMA data_version; our
        # wake-ups come often, so look at most once per interval (appends would conflict anyway)
        if self._external:  # a command written through our own Store (same connection)
            self._external = False
            async with self._lock:
                await self.refresh()
            return
        now = self.clock()
        if now - self._checked_at < self.poll_interval and self._wake.is_set():
            return
        self._checked_at = now
        version = await self.store.data_version()
        if version != self._data_version:
            self._data_version = version
            async with self._lock:
                await self.refresh()

    # -- attempts ----------------------------------------------------------------------------

    async def _request(self, start: StartAttempt) -> AttemptRequest:
        agent = self._inputs.agent_of(self.state, start)
        meter = self._meters.get(start.stage, start.attempt) or self._meters.open(start, agent)
        # what a runner logs mid-attempt (a debate turn) is committed like any step
        sink = StageJournal(self.state.stages[start.stage].debate, lambda e: self._advance([e]))
        return await self._inputs.request(self.state, start, meter, sink)

    async def _attempt(self, start: StartAttempt, scope: anyio.CancelScope) -> None:
        t0 = time.monotonic()
        result: AttemptResult | None = None
        outcome: ev.AttemptOutcome = "failed"
        error: str | None = None
        retryable = fatal = False
        slot = self.slots.held()
        timeout = self.state.stage_spec(start.stage).timeout
        try:
            with scope:
                try:
                    request = await self._request(start)
                    result = await call_runner(self._tg, self.runner, request, timeout=timeout)
                    if result is None:  # the deadline passed (runner_call: even a stuck one)
                        outcome, retryable = "timed_out", True
                        error = f"stage timed out after {timeout:g}s"
                    else:
                        outcome, error = result.status, result.error
                except StageTimeout as exc:  # a command stage's own timeout
                    outcome, error, retryable = "timed_out", str(exc), True
                except BudgetExceeded as exc:
                    outcome, error = "budget_exceeded", str(exc)
                except (ModelError, RunFailure) as exc:
                    outcome, error, retryable = "failed", str(exc), exc.retryable
                    fatal = not exc.retryable
                except Exception as exc:  # a runner bug must not take the run down with it
                    log.exception("run %s stage %s: runner raised", self.state.run_id, start.stage)
                    outcome, error = "failed", f"runner error: {type(exc).__name__}: {exc}"
            if scope.cancelled_caught:
                if self._stopping:
                    outcome, error = "interrupted", "the process stopped during the attempt"
                else:
                    outcome = "cancelled"
                    error = self.state.end_reason or "cancelled"
                result = None
            await self._record(
                start,
                outcome,
                result,
                error,
                retryable,
                time.monotonic() - t0,
                fatal=fatal,
                slot=slot,
            )
        except anyio.get_cancelled_exc_class():
            # cancelled from outside (shutdown, Ctrl-C): log it, so none stays "running" unowned
            self._stopping = True
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(LeaseLost):
                    await self._record(
                        start,
                        "interrupted",
                        None,
                        "the process stopped during the attempt",
                        False,
                        time.monotonic() - t0,
                        slot=slot,
                    )
            raise
        except LeaseLost:
            pass
        finally:
            self._meters.close(start.stage, start.attempt)
            self._inputs.forget(start)
            if self._scopes.get(start.stage) is scope:  # a retry may already own the key
                del self._scopes[start.stage]
            slot.release()
            self._wake.set()

    async def _record(
        self,
        start: StartAttempt,
        outcome: ev.AttemptOutcome,
        result: AttemptResult | None,
        error: str | None,
        retryable: bool,
        duration: float,
        *,
        fatal: bool = False,
        slot: HeldSlot | None = None,
    ) -> None:
        finished, new = finished_event(
            self.state,
            start,
            outcome,
            result,
            error,
            retryable=retryable,
            fatal=fatal,
            duration=duration,
            meter=self._meters.get(start.stage, start.attempt),
        )
        with anyio.CancelScope(shield=True):
            await self._advance([finished], new, free=slot)
