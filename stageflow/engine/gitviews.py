"""What status shows of a run's git work, read from the log (no git command runs): each
stage's branch, commit, files changed and merge state; the run branch's final commit and
lands; the conflict a human is asked to resolve."""

from __future__ import annotations

from stageflow.base import Model
from stageflow.engine.gitplan import lane_for
from stageflow.engine.gitstate import CONFLICT_ARTIFACT
from stageflow.engine.lanes import lane_name
from stageflow.engine.state import RunState

__all__ = ["LandView", "RunGitView", "StageGitView", "merge_gate", "run_git", "stage_git"]


class StageGitView(Model):
    """Where a stage's work is in git (runs with a worktree)."""

    branch: str  # the branch it worked on (its own, or the run branch)
    commit: str | None = None  # its commit; none until it finished
    files_changed: int | None = None
    merge: str  # where its work stands on the run branch


class LandView(Model):
    into: str
    strategy: str
    commit: str | None


class RunGitView(Model):
    """The run branch, from the log: where it started, its last commit, its lands."""

    branch: str
    base: str | None = None
    head: str | None = None  # the run branch's last commit: the final one
    target: str | None = None  # the branch the run started from
    in_flight: str | None = None  # a git operation under way
    conflict: str | None = None
    landed: list[LandView] = []
    land_refused: str | None = None


def _short(sha: str | None) -> str:
    return sha[:10] if sha else "-"


def stage_git(state: RunState, stage_id: str) -> StageGitView | None:
    """One stage's git view; None when the run has no worktree."""
    git = state.git
    lane = lane_for(state, stage_id)
    if lane is None or git.branch is None:
        return None
    mine = git.stages.get(stage_id)
    st = state.stages[stage_id]
    conflict = git.conflict
    if lane.kind == "resolve":
        source = git.merge_stages.get(stage_id, "")
        merged = git.stages.get(source)
        done = merged is not None and merged.merged is not None
        merge = f"resolves the merge of '{source}'" + (
            f": merged ({_short(merged.merged)})" if done and merged else ""
        )
    elif stage_id in state.parent_of:  # items are not laned: the for_each stage commits
        parent = state.parent_of[stage_id]
        theirs = git.stages.get(parent)
        done = theirs is not None and theirs.committed
        merge = f"committed with '{parent}'" + (
            f" ({_short(theirs.commit)})" if done and theirs else " once its items are done"
        )
    elif mine is None or not mine.committed:
        merge = "not committed yet" if st.status not in ("skipped", "cancelled") else "-"
    elif mine.commit is None:
        merge = "no changes"
    elif lane.kind == "run":
        merge = "on the run branch"
    elif mine.merged is not None:
        at = f"for '{mine.join}'" if mine.join else "at the end of the run"
        merge = f"merged {at} ({_short(mine.merged)})"
    elif conflict is not None and conflict.source == stage_id:
        merge = f"conflict in {', '.join(conflict.files)}: {conflict.stage} resolves it"
    elif st.status == "failed":  # tolerated (on_failure: continue): no join merges it
        merge = "not merged: it failed (on_failure: continue); its commit stays on its branch"
    else:
        merge = "waiting for its join"
    return StageGitView(
        branch=lane.branch,
        commit=mine.commit if mine is not None else None,
        files_changed=len(mine.files) if mine is not None and mine.committed else None,
        merge=merge,
    )


def run_git(state: RunState) -> RunGitView | None:
    """The run branch's view; None when the run has no worktree."""
    git = state.git
    if not git.on or git.branch is None:
        return None
    pending = git.pending
    conflict = git.conflict
    return RunGitView(
        branch=git.branch,
        base=git.base,
        head=git.head,
        target=git.target,
        in_flight=f"{pending.op} {pending.stage or ''}".strip() if pending else None,
        conflict=f"merging '{conflict.source}' conflicts in {', '.join(conflict.files)}"
        if conflict
        else None,
        landed=[LandView(into=x.into, strategy=x.strategy, commit=x.commit) for x in git.landed],
        land_refused=git.refused,
    )


def merge_gate(state: RunState, stage_id: str, reason: str | None) -> tuple[str, list[str]]:
    """What a human is asked at a conflict (``on_conflict: human``), and what to read."""
    conflict = state.git.conflict
    source = state.git.merge_stages.get(stage_id, "?")
    files = ", ".join(conflict.files) if conflict is not None else "?"
    where = f"{state.workdir}/.stageflow/worktrees/{lane_name(state.run_id, stage_id)}"
    again = f"{reason}. " if reason and reason.startswith("conflict markers remain") else ""
    what = (
        f"{again}merging stage '{source}' into the run branch conflicts in {files}; both sides "
        f"and the base are in {stage_id}/{CONFLICT_ARTIFACT}. Resolve the markers in {where} "
        "and approve, or reject to fail the run (both branches are kept)"
    )
    return what, [f"{stage_id}/{CONFLICT_ARTIFACT}"]
