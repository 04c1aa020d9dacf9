"""The git operations of a run's lanes, logged before (``git_started``) and after
(``git_finished``) each runs, so a crash in between is redone idempotently."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stageflow.events.base import ArtifactRef, _Event

__all__ = ["GitFinished", "GitOp", "GitOutcome", "GitStarted"]


GitOp = Literal["prepare", "commit", "merge", "resolve", "adopt", "land"]
GitOutcome = Literal["done", "no_changes", "conflict", "unresolved", "refused", "failed", "off"]


class GitStarted(_Event):
    """The engine is about to change a repository (logged before the git command runs).

    ``prepare`` makes the run's worktree; ``commit`` commits ``stage``'s changes (attempt
    ``attempt``) on its lane's branch; ``merge`` merges ``stage``'s branch into the run branch
    for ``join`` (the stage whose start needs it; None: the run's end); ``resolve`` makes the
    worktree where the conflict of merging ``stage`` is resolved (``on_conflict``), ``adopt``
    commits that resolution and brings it into the run branch; ``land`` brings the run branch
    into ``into`` with ``strategy``. ``head`` is the run branch's commit the operation starts
    from, so a redo after a crash can tell what was already done.
    """

    type: Literal["git_started"] = "git_started"
    op: GitOp
    stage: str | None = None
    join: str | None = None
    attempt: int | None = None
    head: str | None = None
    on_conflict: Literal["agent", "human"] | None = None
    strategy: Literal["merge", "squash", "rebase"] | None = None
    into: str | None = None
    by: str | None = None  # the process performing it (a land from a dead process is redone)


class GitFinished(_Event):
    """What a ``GitStarted`` operation did: its outcome, the commit it made, the files."""

    type: Literal["git_finished"] = "git_finished"
    op: GitOp
    stage: str | None = None
    outcome: GitOutcome
    commit: str | None = None
    branch: str | None = None  # the branch the commit is on (prepare: the run branch)
    base: str | None = None  # prepare: the commit the run started from
    target: str | None = None  # prepare: the branch it started from (land's default)
    files: list[str] = Field(default_factory=list)
    output: str = ""  # why it was refused or failed, what conflicted
    artifacts: list[ArtifactRef] = Field(default_factory=list)  # on ``stage``
