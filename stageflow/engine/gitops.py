"""Performing the git operations a run's log asks for: the driver's side of ``gitplan``.

The engine knows no git. ``GitLanes`` is the seam (implemented by ``workspace.lanes``): it
says whether a run gets a worktree at all, and performs one logged operation. The planner
decides an operation as a ``git_started`` decision, committed with the step that led to it;
``GitOps`` then runs it (one at a time per run, in the driver's task group, the git work in a
worker thread) and hands its ``git_finished`` back to the driver to commit. An operation left
started by a process that died is redone by the next owner with ``redo=True``, so the
repository is looked at before anything is done again. Cancelled (shutdown), it records
nothing: the log still says started, and the next owner redoes it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from stageflow import events as ev
from stageflow.engine.lanes import merge_stage_id
from stageflow.engine.state import RunState
from stageflow.store.rows import NewArtifact

__all__ = ["GitLanes", "GitOps", "GitResult", "finished_event"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GitResult:
    """What one operation did (see ``events.GitFinished``)."""

    outcome: ev.GitOutcome
    commit: str | None = None
    branch: str | None = None
    base: str | None = None
    target: str | None = None
    files: tuple[str, ...] = ()
    output: str = ""
    artifacts: Mapping[str, str] = field(default_factory=dict)  # name -> text


class GitLanes(Protocol):
    """The repository side of a run's lanes (``workspace.lanes.WorktreeLanes``)."""

    def wanted(self, state: RunState) -> bool:
        """Whether the run should get a git worktree (a model runner, not ``in_place``)."""
        ...

    async def perform(
        self, state: RunState, op: ev.GitStarted, at: float, *, redo: bool
    ) -> GitResult:
        """Do ``op`` (logged at ``at``); ``redo``: it may have been partly done before."""
        ...

    async def target_tip(self, state: RunState, into: str) -> str | None:
        """The commit branch ``into`` points at (None: no such branch), read before a land."""
        ...


def finished_event(
    state: RunState, op: ev.GitStarted, result: GitResult
) -> tuple[ev.GitFinished, list[NewArtifact]]:
    """The ``git_finished`` of ``op`` and the artifacts it brings (a conflict's report goes
    to the merge stage, as its next version)."""
    refs: list[ev.ArtifactRef] = []
    rows: list[NewArtifact] = []
    owner = merge_stage_id(op.stage or "") if result.outcome == "conflict" else op.stage
    known = state.stages.get(owner or "")
    for name, text in result.artifacts.items():
        prev = known.artifacts.get(name) if known is not None else None
        version = prev.version + 1 if prev is not None else 1
        data = text.encode("utf-8")
        refs.append(
            ev.ArtifactRef(
                name=name, version=version, size=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
        )
        rows.append(NewArtifact(owner or "", name, version, text, 0))
    finished = ev.GitFinished(
        op=op.op,
        stage=op.stage,
        outcome=result.outcome,
        commit=result.commit,
        branch=result.branch,
        base=result.base,
        target=result.target,
        files=list(result.files),
        output=result.output[-4000:],
        artifacts=refs,
    )
    return finished, rows


Advance = Callable[[Sequence[ev.Event], Sequence[NewArtifact]], Awaitable[bool]]
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


class GitOps:
    """The git operation of one run in flight in this driver (at most one)."""

    def __init__(
        self, lanes: GitLanes | None, state: RunState, advance: Advance, spawn: Spawn
    ) -> None:
        self.lanes = lanes
        self._advance = advance
        self._spawn = spawn
        self._launched = 0  # seq of the last git_started this driver ran
        # started before this driver took the run over: it may be half done
        self._inherited = state.git.pending_seq if state.git.pending is not None else 0
        self.busy = False

    def opening(self, state: RunState) -> list[ev.Event]:
        """``prepare`` for a run that has not started anything yet and wants a worktree
        (runs begun before lanes existed keep working as they did)."""
        if self.lanes is None or state.ended is not None or state.git.status != "unknown":
            return []
        if state.git.pending is not None or any(st.attempts for st in state.stages.values()):
            return []
        return [ev.GitStarted(op="prepare")] if self.lanes.wanted(state) else []

    def launch(self, state: RunState) -> None:
        """Run the operation the log says is in flight, unless this driver already did."""
        op = state.git.pending
        if self.lanes is None or op is None or op.op == "land":
            return
        if state.git.pending_seq == self._launched:
            return
        redo = state.git.pending_seq == self._inherited
        self._launched = state.git.pending_seq
        self.busy = True
        at = state.git.pending_at

        async def run() -> None:
            try:
                await self._run(state, op, at, redo)
            finally:
                self.busy = False

        self._spawn(run)

    async def _run(self, state: RunState, op: ev.GitStarted, at: float, redo: bool) -> None:
        assert self.lanes is not None
        try:
            result = await self.lanes.perform(state, op, at, redo=redo)
        except anyio.get_cancelled_exc_class():
            raise  # the log says started: the next owner redoes it
        except Exception as exc:  # git missing, a disk full...: the run pauses, saying why
            log.exception("run %s: git %s failed", state.run_id, op.op)
            result = GitResult("failed", output=f"{type(exc).__name__}: {exc}")
        finished, rows = finished_event(state, op, result)
        with anyio.CancelScope(shield=True):
            await self._advance([finished], rows)
