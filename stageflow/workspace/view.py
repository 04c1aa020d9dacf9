"""What status shows about a run's workspace: its worktree, branch and, once ended, its diff."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio.to_thread

from stageflow.engine.service import WorkspaceProbe
from stageflow.engine.views import WorkspaceView
from stageflow.errors import StageflowError
from stageflow.workspace.diffs import diff_patch, diff_summary
from stageflow.workspace.worktree import (
    WorkspaceError,
    check_gitfile,
    find_workspace,
    repo_info,
    worktree_dir,
)

log = logging.getLogger(__name__)


def _probe(project: Path, run_id: str, ended: bool) -> WorkspaceView | None:
    ws = find_workspace(project, run_id)
    if ws is None:
        return None
    view = WorkspaceView(path=str(ws.root), mode=ws.mode, branch=ws.branch, base=ws.base)
    if ended:
        try:
            if ws.mode == "worktree":
                _trusted(project, run_id)
            diff = diff_summary(ws)
        except (StageflowError, OSError) as exc:  # status must not fail because git did
            log.warning("run %s: no diff summary: %s", run_id, exc)
            diff = None
        if diff is not None:
            view.files_changed = len(diff.files)
            view.insertions = diff.insertions
            view.deletions = diff.deletions
            view.diff = diff.text()
    return view


def _trusted(project: Path, run_id: str) -> None:
    """git diff runs clean filters: never in a worktree whose ``.git`` a stage replaced."""
    repo = repo_info(project)
    if isinstance(repo, str):
        raise WorkspaceError(repo)
    check_gitfile(repo.common, worktree_dir(project, run_id))


def workspace_probe(project: Path) -> WorkspaceProbe:
    """A ``Service`` workspace probe for ``project`` (git runs in a worker thread)."""

    async def probe(run_id: str, ended: bool) -> WorkspaceView | None:
        return await anyio.to_thread.run_sync(_probe, project, run_id, ended)

    return probe


def _patch(project: Path, run_id: str, max_chars: int) -> str | None:
    ws = find_workspace(project, run_id)
    if ws is None:
        return None
    try:
        _trusted(project, run_id)
        return diff_patch(ws, max_chars=max_chars)
    except (StageflowError, OSError) as exc:  # the page must not fail because git did
        log.warning("run %s: no diff: %s", run_id, exc)
        return None


async def workspace_patch(project: Path, run_id: str, max_chars: int = 200_000) -> str | None:
    """The run's worktree diff against its base, live (the dashboard's workspace section)."""
    return await anyio.to_thread.run_sync(_patch, project, run_id, max_chars)
