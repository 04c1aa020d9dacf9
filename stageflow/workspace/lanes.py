"""``WorktreeLanes``: the engine's ``GitLanes`` seam on real git repositories.

It maps each logged operation (``events.GitStarted``) to its function in ``joins`` or
``landing`` with the right worktrees: the run's (``.stageflow/worktrees/<run>``, where the
run branch is checked out), a stage's own (``<run>--<stage>``) or a merge's. git runs in a
worker thread; a git failure becomes a ``failed`` outcome saying what failed (the engine then
pauses the run), never an exception out of the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread

from stageflow import events as ev
from stageflow.engine.gitops import GitResult
from stageflow.engine.gitplan import lane_for
from stageflow.engine.lanes import lane_branch, merge_stage_id, run_branch
from stageflow.engine.state import RunState
from stageflow.workspace.git import GitError, git, rev
from stageflow.workspace.joins import (
    adopt_resolution,
    commit_stage,
    merge_into_run,
    prepare_resolution,
)
from stageflow.workspace.landing import land_run
from stageflow.workspace.worktree import (
    WorkspaceMode,
    check_gitfile,
    lane_dir,
    prepare_workspace,
    repo_info,
    worktree_dir,
)

__all__ = ["WorktreeLanes", "land_message"]

log = logging.getLogger(__name__)


def land_message(state: RunState) -> str:
    """The land commit's message: the task, the summary of each stage whose commit is on the
    run branch (a failed one's that no join merged is not), the run in a trailer."""
    task = " ".join(state.task.split())
    subject = task if len(task) <= 60 else task[:59] + "…"
    lines = [f"{subject} (stageflow run {state.run_id})", "", state.task.strip(), "", "Stages:"]
    isolated = state.lanes.isolated
    for sid, g in state.git.stages.items():  # those on the run branch: what lands
        if g.commit is not None and (g.merged is not None or sid not in isolated):
            summary = " ".join(state.stages[sid].summary.split())[:100] or "done"
            lines.append(f"- {sid}: {summary} ({g.commit[:10]})")
    lines += ["", f"Stageflow-Run: {state.run_id}", f"Stageflow-Template: {state.template}"]
    return "\n".join(lines) + "\n"


class WorktreeLanes:
    """Git worktrees per lane for the runs of one project."""

    def __init__(
        self, project: Path, *, enabled: bool, mode: Callable[[], WorkspaceMode] | None = None
    ) -> None:
        self.project = Path(project).resolve()
        self.enabled = enabled  # a model runner writes files; the offline one does not
        self._mode = mode or (lambda: "auto")

    def mode(self, state: RunState) -> WorkspaceMode:
        return state.spec.workspace or self._mode()

    def wanted(self, state: RunState) -> bool:
        """A run gets a worktree when its stages may write files and not in place."""
        return self.enabled and self.mode(state) != "in_place"

    async def target_tip(self, state: RunState, into: str) -> str | None:
        """The commit ``into`` points at in the project's repository (None: no such branch)."""
        return await anyio.to_thread.run_sync(rev, self.project, f"refs/heads/{into}")

    async def perform(
        self, state: RunState, op: ev.GitStarted, at: float, *, redo: bool
    ) -> GitResult:
        """Do ``op`` in a worker thread (see ``engine.gitops.GitLanes``)."""
        return await anyio.to_thread.run_sync(self._perform, state, op, at, redo)

    def _perform(self, state: RunState, op: ev.GitStarted, at: float, redo: bool) -> GitResult:
        try:
            return self._dispatch(state, op, at, redo)
        except (GitError, OSError) as exc:
            log.warning("run %s: git %s failed: %s", state.run_id, op.op, exc)
            return GitResult("failed", output=str(exc))

    def _dispatch(self, state: RunState, op: ev.GitStarted, at: float, redo: bool) -> GitResult:
        rid = state.run_id
        trunk = worktree_dir(self.project, rid)
        if op.op == "prepare":
            return self._prepare(state)
        if op.op == "land":
            return land_run(
                self.project,
                run_id=rid,
                run_branch=run_branch(rid),
                base=state.git.base or "",
                into=op.into or "",
                strategy=op.strategy or "squash",
                before=op.head,
                message=land_message(state),
                at=at,
                redo=redo,
            )
        source = op.stage or ""
        self._trusted(trunk)
        if op.op == "commit":
            lane = lane_for(state, source)
            where = (
                trunk if lane is None or lane.kind == "run" else lane_dir(self.project, rid, lane)
            )
            self._trusted(where)
            st = state.stages[source]
            if st.status == "changes_requested":
                summary = f"(asked for changes) {st.summary}"
            elif st.status == "failed":
                summary = f"(failed) {st.reason or ''}"
            else:
                summary = st.summary
            return commit_stage(
                where,
                run_id=rid,
                stage=source,
                attempt=op.attempt or st.attempt,
                summary=summary,
                head=op.head,
                at=at,
                redo=redo,
            )
        if op.op == "merge":
            return merge_into_run(
                trunk,
                lane_branch(rid, source),
                run_id=rid,
                source=source,
                attempt=op.attempt,
                join=op.join,
                head=op.head,
                at=at,
                redo=redo,
            )
        merging = lane_for(state, merge_stage_id(source))
        assert merging is not None
        where = lane_dir(self.project, rid, merging)
        if op.op == "resolve":
            repo = repo_info(self.project)
            if isinstance(repo, str):
                return GitResult("failed", output=repo)
            return prepare_resolution(
                repo.top,
                where,
                merging.branch,
                lane_branch(rid, source),
                head=op.head or "",
                prefix=repo.prefix,
            )
        self._trusted(where)
        conflict = state.git.conflict
        human = conflict is not None and conflict.mode == "human"
        by = "a human" if human else f"{merge_stage_id(source)} (attempt {op.attempt})"
        return adopt_resolution(
            trunk,
            where,
            lane_branch(rid, source),
            run_id=rid,
            source=source,
            attempt=state.stages[source].attempt if source in state.stages else None,
            join=op.join,
            resolved_by=by,
            head=op.head,
            files=conflict.files if conflict is not None else (),
            at=at,
            redo=redo,
        )

    def _trusted(self, where: Path) -> None:
        """Refuse a model-written worktree whose ``.git`` was changed (``check_gitfile``)."""
        repo = repo_info(self.project)
        if isinstance(repo, str):
            raise GitError(repo)
        check_gitfile(repo.common, where)

    def _prepare(self, state: RunState) -> GitResult:
        ws = prepare_workspace(self.project, state.run_id, self.mode(state))
        if ws.mode != "worktree":
            return GitResult("off", output=ws.reason or f"the run works {ws.mode}")
        head = rev(ws.root, "HEAD")
        named = git(["symbolic-ref", "--short", "-q", "HEAD"], cwd=self.project, check=False)
        return GitResult(
            "done",
            commit=head,
            branch=ws.branch,
            base=ws.base,
            target=named.stdout.strip() or None,
        )
