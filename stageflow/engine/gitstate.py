"""What the log says about a run's git work: the pure fold of ``git_started``/``git_finished``.

``GitState`` holds the run branch (its base and the head the log knows), each stage's commit
and merge, the operation in flight (logged as started, not yet finished: after a crash it is
redone, idempotently), an open conflict and the lands. ``fold_git`` returns it with a
``GitEffect``: what the event changes elsewhere in the run (a merge stage appears, a merge
stage's status, a pause). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from stageflow import events as ev
from stageflow.engine.lanes import merge_stage_id
from stageflow.workflows.spec import Approval, OnFailure, StageSpec, WorkflowSpec

__all__ = [
    "CONFLICT_ARTIFACT",
    "MERGE_AGENT",
    "Conflict",
    "GitEffect",
    "GitState",
    "Landed",
    "StageGit",
    "fold_git",
    "grow_spec",
    "merge_stage_spec",
]

MERGE_AGENT = "merge-resolver"
CONFLICT_ARTIFACT = "conflict"  # on the merge stage: each file's base and both sides


@dataclass(frozen=True)
class StageGit:
    """One stage's git work: its commit, and the merge that brought it into the run branch."""

    branch: str | None = None  # the branch its commit is on
    commit: str | None = None  # None with ``committed``: it changed no file
    committed: bool = False
    attempt: int | None = None  # the attempt last committed (a rework's is committed again)
    files: tuple[str, ...] = ()
    merged: str | None = None  # the merge commit on the run branch
    join: str | None = None  # the stage whose start merged it; "" for the run's end


@dataclass(frozen=True)
class Conflict:
    """A merge into the run branch that conflicted and waits for its merge stage."""

    source: str  # the stage whose branch conflicted
    join: str | None
    stage: str  # the merge stage resolving it
    mode: Literal["agent", "human"]
    files: tuple[str, ...]
    head: str | None  # the run branch's commit the resolution is made on
    prepared: bool = False  # its worktree holds the conflict


@dataclass(frozen=True)
class Landed:
    into: str
    strategy: str
    commit: str | None
    at: float


@dataclass(frozen=True)
class GitState:
    status: Literal["unknown", "on", "off"] = "unknown"
    reason: str = ""  # why off
    branch: str | None = None
    base: str | None = None
    head: str | None = None  # the run branch's commit after the last logged operation
    target: str | None = None  # the branch the run started from
    pending: ev.GitStarted | None = None
    pending_seq: int = 0
    pending_at: float = 0.0
    stages: Mapping[str, StageGit] = field(default_factory=dict)
    joins: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # join -> merged stages
    merge_stages: Mapping[str, str] = field(default_factory=dict)  # merge stage -> source
    conflict: Conflict | None = None
    landed: tuple[Landed, ...] = ()
    refused: str | None = None  # the last land's refusal

    @property
    def on(self) -> bool:
        return self.status == "on"


MergeStageStatus = Literal["succeeded", "blocked", "attempt_failed"]


@dataclass(frozen=True)
class GitEffect:
    """What a git event changes outside ``GitState``."""

    new_stage: StageSpec | None = None
    artifacts: tuple[ev.ArtifactRef, ...] = ()  # on the new (or updated) merge stage
    stage_update: tuple[str, MergeStageStatus, str | None] | None = None  # stage, status, why
    pause: str | None = None


_NONE = GitEffect()


def merge_stage_spec(
    source: str, join: str | None, files: tuple[str, ...], mode: str = "agent"
) -> StageSpec:
    """The stage that resolves a conflict merging ``source`` (the same on every replay). With
    ``on_conflict: human`` its gate is a person's alone (``approval: {by: human}``): the
    assistant's ``workflow_approve`` cannot pass it, as for any ``by: human`` gate."""
    where = f"for stage '{join}'" if join else "at the end of the run"
    listed = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
    description = (
        f"Resolve the conflict of merging stage '{source}' into the run branch ({where}). "
        f"Your workspace holds the merge with conflict markers in: {listed}. The "
        f"'{CONFLICT_ARTIFACT}' artifact has each file's base and both sides. Edit every "
        "conflicted file so it keeps the intent of both sides, remove every marker line "
        "(<<<<<<<, |||||||, =======, >>>>>>>), then submit a short resolution note."
    )
    return StageSpec.model_construct(
        id=merge_stage_id(source),
        description=description,
        agent=MERGE_AGENT,
        produces=["resolution"],
        on_failure=OnFailure(action="retry", max_attempts=2, backoff=1.0),
        approval=Approval(by="human", prompt=description) if mode == "human" else None,
    )


def grow_spec(spec: WorkflowSpec, stage: StageSpec) -> WorkflowSpec:
    """``spec`` with ``stage`` appended (a fresh model: cached lookups are rebuilt)."""
    values = {name: getattr(spec, name) for name in type(spec).model_fields}
    values["stages"] = [*spec.stages, stage]
    return WorkflowSpec.model_construct(**values)


def _stage(git: GitState, sid: str, **changes: object) -> Mapping[str, StageGit]:
    stages = dict(git.stages)
    stages[sid] = replace(stages.get(sid, StageGit()), **changes)  # type: ignore[arg-type]
    return stages


def fold_git(
    git: GitState, env: ev.Envelope, e: ev.GitStarted | ev.GitFinished
) -> tuple[GitState, GitEffect]:
    """Apply one git event. A finish ends the operation in flight whatever its outcome."""
    if isinstance(e, ev.GitStarted):
        # a land taken over from a dead process keeps its first time: a redo makes the same
        # commit
        again = git.pending is not None and git.pending.op == e.op == "land"
        at = git.pending_at if again else env.at
        return replace(git, pending=e, pending_seq=env.seq, pending_at=at), _NONE
    started = git.pending
    git = replace(git, pending=None, pending_seq=0)
    if e.outcome == "failed":
        return git, GitEffect(pause=f"git {e.op} failed: {e.output}; fix it and resume the run")
    if e.op == "prepare":
        if e.outcome == "off":
            return replace(git, status="off", reason=e.output), _NONE
        head = e.commit or e.base
        return replace(
            git, status="on", branch=e.branch, base=e.base, head=head, target=e.target
        ), _NONE
    if e.op == "land":
        if e.outcome == "done" and started is not None:
            into = e.branch or started.into or ""
            landed = Landed(into, started.strategy or "squash", e.commit, env.at)
            return replace(git, landed=(*git.landed, landed), refused=None), _NONE
        return replace(git, refused=e.output or e.outcome), _NONE
    sid = e.stage or ""
    if e.op == "commit":
        on_run = e.branch is not None and e.branch == git.branch
        attempt = started.attempt if started is not None else None
        if e.commit:  # a new commit (a rework's too) is merged again at the next join
            stages = _stage(
                git,
                sid,
                branch=e.branch,
                commit=e.commit,
                committed=True,
                files=tuple(e.files),
                attempt=attempt,
                merged=None,
                join=None,
            )
        else:  # nothing changed: what was committed and merged before stands
            stages = _stage(git, sid, committed=True, attempt=attempt)
        head = e.commit if on_run and e.commit else git.head
        return replace(git, stages=stages, head=head), _NONE
    join = started.join if started is not None else None
    if e.op in ("merge", "adopt") and e.outcome == "done":
        if e.op == "adopt" and git.conflict is not None:
            join = git.conflict.join
        stages = _stage(git, sid, merged=e.commit, join=join or "")
        joins = dict(git.joins)
        if join:
            joins[join] = (*joins.get(join, ()), sid)
        done = replace(git, stages=stages, joins=joins, head=e.commit or git.head, conflict=None)
        if e.op == "adopt":
            return done, GitEffect(stage_update=(merge_stage_id(sid), "succeeded", None))
        return done, _NONE
    if e.op == "merge" and e.outcome == "conflict":
        mode = started.on_conflict if started is not None and started.on_conflict else "agent"
        files = tuple(e.files)
        conflict = Conflict(sid, join, merge_stage_id(sid), mode, files, git.head)
        merges = {**git.merge_stages, conflict.stage: sid}
        return replace(git, conflict=conflict, merge_stages=merges), GitEffect(
            new_stage=merge_stage_spec(sid, join, files, mode), artifacts=tuple(e.artifacts)
        )
    if e.op == "resolve" and e.outcome == "done" and git.conflict is not None:
        return replace(git, conflict=replace(git.conflict, prepared=True)), _NONE
    if e.op == "adopt" and e.outcome == "unresolved" and git.conflict is not None:
        status: MergeStageStatus = "blocked" if git.conflict.mode == "human" else "attempt_failed"
        reason = f"conflict markers remain in {', '.join(e.files) or 'the merge'}"
        return git, GitEffect(stage_update=(git.conflict.stage, status, reason))
    return git, _NONE
