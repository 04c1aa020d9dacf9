"""Special files in a workspace never hang a tool or status; model ids compare by snapshot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import pytest

from stageflow.engine.runner import same_model
from stageflow.errors import ToolError
from stageflow.workspace.root import Workspace
from stageflow.workspace.worktree import diff_summary, prepare_workspace


def test_read_refuses_a_fifo_instead_of_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ToolError, match="`pipe` is not a regular file"):
        Workspace(tmp_path).read("pipe")


def _committed_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "a.txt").write_text("one\n")
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    return project


@pytest.mark.anyio
async def test_status_diff_counts_no_lines_for_an_untracked_fifo_or_device_link(
    tmp_path: Path,
) -> None:
    ws = prepare_workspace(_committed_project(tmp_path), "r-fifo-0001")
    os.mkfifo(ws.root / "pipe")
    (ws.root / "zero").symlink_to("/dev/zero")
    (ws.root / "b.txt").write_text("two\nlines\n")
    with anyio.fail_after(10):
        diff = await anyio.to_thread.run_sync(diff_summary, ws)
    assert diff is not None
    counts = {f.path: f.insertions for f in diff.files}
    assert counts["b.txt"] == 2
    assert counts.get("pipe", 0) == 0 and counts.get("zero", 0) == 0


@pytest.mark.parametrize(
    ("asked", "answered", "same"),
    [
        ("claude-sonnet-4-6", "claude-sonnet-4-6-20260101", True),
        ("claude-sonnet-4-6-latest", "claude-sonnet-4-6", True),
        ("claude-opus-4-7", "claude-haiku-4-5", False),
        (None, "claude-haiku-4-5", True),
    ],
)
def test_same_model_ignores_snapshot_and_latest_suffixes(
    asked: str | None, answered: str, same: bool
) -> None:
    assert same_model(asked, answered) is same
