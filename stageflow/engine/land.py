"""Landing a completed run into the user's branch: ``Service.land`` (``stageflow land``,
``workflow_control(action="land")``).

The decision is logged first (``git_started`` with the target's tip as ``head`` and this
process as ``by``), then the repository changes (``GitLanes.perform``, ``workspace.landing``),
then the outcome (``git_finished``). Two processes landing at once get one ``git_started``
(the append is optimistic); a land left started by a process that died is redone by the next
``land``, which finds it in the log, takes it over (logs it again as its own, so of two
processes redoing it at once one does) and does not land twice. A refusal (the target moved
in a way that conflicts, a dirty working tree) is recorded and raised as ``InvalidState``
with what to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Literal

from stageflow import events as ev
from stageflow.engine.driver import summarize
from stageflow.engine.gitops import GitLanes, finished_event
from stageflow.engine.leases import owner_is_dead
from stageflow.engine.state import RunState, fold
from stageflow.errors import ConcurrencyConflict, InvalidArgument, InvalidState
from stageflow.ids import new_owner_id
from stageflow.store.store import Store

__all__ = ["LandStrategy", "Lander"]

LandStrategy = Literal["merge", "squash", "rebase"]
STRATEGIES: tuple[LandStrategy, ...] = ("squash", "merge", "rebase")
# what git accepts as a branch name, minus the surprising ones
_BRANCH = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]+(?<![./])(?<!\.lock)")


def _check_branch(name: str, run_id: str) -> str:
    """``name`` as a branch to land into, or ``InvalidArgument`` saying why not: git's rules
    for branch names (no ``..``, no component starting with ``.`` or ending in ``.lock``, no
    leading ``-``), only plain characters, never ``HEAD`` nor stageflow's own branches."""
    name = name.strip()
    if name.startswith("refs/heads/"):
        name = name[len("refs/heads/") :]
    parts = name.split("/")
    plain = _BRANCH.fullmatch(name) is not None and len(name) <= 200
    if not plain or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts):
        raise InvalidArgument(
            f"into={name!r} is not a branch name (letters, digits, '.', '_', '-' and '/'; "
            "no '..', no part starting with '.' or ending in '.lock')"
        )
    if name == "HEAD" or parts[0] == "stageflow":
        raise InvalidArgument(
            f"into={name!r}: stageflow/... branches are the runs' own and HEAD is no branch; "
            f"name your branch, e.g. `stageflow land {run_id} --into stageflow-{run_id}`"
        )
    return name


class Lander:
    """Lands runs of one project; at most one land per run at a time in this process."""

    def __init__(
        self, store: Store, lanes: GitLanes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.lanes = lanes
        self.clock = clock
        self.owner = new_owner_id()
        self._busy: set[str] = set()

    async def land(
        self,
        run_id: str,
        *,
        strategy: LandStrategy = "squash",
        into: str | None = None,
        actor: str = "human",
        person: bool = True,
    ) -> RunState:
        """Bring a completed run's branch into ``into`` (default: the branch it started
        from); returns the state with the outcome logged. ``InvalidState`` when it cannot,
        and when ``person`` is false (a model asked: it changes the user's branch)."""
        if strategy not in STRATEGIES:
            raise InvalidArgument(f"strategy must be one of {', '.join(STRATEGIES)}")
        if run_id in self._busy:
            raise InvalidState(f"run {run_id} is being landed by this process already")
        self._busy.add(run_id)
        try:
            return await self._land(run_id, strategy, into, actor, person)
        finally:
            self._busy.discard(run_id)

    async def _land(
        self, run_id: str, strategy: LandStrategy, into: str | None, actor: str, person: bool
    ) -> RunState:
        for _ in range(20):
            state = fold(await self.store.load_events(run_id))
            op, redo = await self._decide(state, strategy, into)
            if not person:  # after the checks, so a wrong state is named first
                raise InvalidState(
                    f"landing run {run_id} changes the user's branch, so only they decide it: "
                    f"ask them to run `stageflow land {run_id}`"
                    + (f" --into {op.into}" if into else "")
                )
            # a land a dead process left is taken over by logging it again as this one's:
            # of two processes redoing it at once, one appends first and the other is told
            # (they would share its worktree, and both record its outcome)
            claim = op.model_copy(update={"by": self.owner}) if redo else op
            try:
                await self._append(state, [claim], actor)
            except ConcurrencyConflict:
                continue  # another writer first: look again (maybe it is landing)
            state = fold(await self.store.load_events(run_id))
            at = state.git.pending_at  # a redo's is the first start's: the same commit
            mine = state.git.pending_seq
            result = await self.lanes.perform(state, op, at, redo=redo)
            finished, rows = finished_event(state, op, result)
            while True:
                try:
                    await self.store.append(
                        run_id,
                        [finished],
                        expect_seq=state.seq,
                        actor=actor,
                        at=self.clock(),
                        summary=summarize(state),
                        artifacts=rows,
                    )
                    break
                except ConcurrencyConflict:
                    state = fold(await self.store.load_events(run_id))
                    if state.git.pending_seq != mine:
                        break  # no longer this land's to record
            state = fold(await self.store.load_events(run_id))
            if result.outcome != "done":
                raise InvalidState(result.output or f"the land of run {run_id} {result.outcome}")
            return state
        raise InvalidState(f"run {run_id} is changing too fast to land; try again")

    async def _decide(
        self, state: RunState, strategy: LandStrategy, into: str | None
    ) -> tuple[ev.GitStarted, bool]:
        """The land to perform: one left half done by a dead process (redo), or a new one."""
        git = state.git
        rid = state.run_id
        if not git.on:
            why = git.reason or "it ran without a git worktree (offline runner or in_place)"
            raise InvalidState(f"run {rid} has no branch to land: {why}")
        if state.ended != "completed":
            raise InvalidState(
                f"run {rid} is {state.status}: only a completed run lands, after its last approval"
            )
        pending = git.pending
        if pending is not None:
            if pending.op != "land":
                raise InvalidState(f"run {rid} is still finishing a git {pending.op}; try again")
            if pending.by != self.owner and not owner_is_dead(pending.by):
                raise InvalidState(f"run {rid} is being landed by another process ({pending.by})")
            return pending, True
        target = _check_branch(into, rid) if into else git.target
        if not target:
            raise InvalidArgument(
                f"run {rid} started on a detached HEAD: name the branch to land into "
                f"(`stageflow land {rid} --into BRANCH`)"
            )
        for done in git.landed:
            if done.into == target:
                raise InvalidState(f"run {rid} has already landed into {target} as {done.commit}")
        before = await self.lanes.target_tip(state, target)
        op = ev.GitStarted(op="land", strategy=strategy, into=target, head=before, by=self.owner)
        return op, False

    async def _append(
        self, state: RunState, events: list[ev.Event], actor: str
    ) -> list[ev.Envelope]:
        return await self.store.append(
            state.run_id,
            events,
            expect_seq=state.seq,
            actor=actor,
            at=self.clock(),
            summary=summarize(state),
        )
