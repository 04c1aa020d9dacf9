"""Special files in a workspace never hang a tool or status; model ids compare by snapshot."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from stageflow.engine.runner import same_model
from stageflow.errors import ToolError
from stageflow.workspace.diffs import diff_summary
from stageflow.workspace.root import Workspace
from stageflow.workspace.tools import call_workspace_tool
from stageflow.workspace.worktree import prepare_workspace


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


# -- every file tool refuses special files, without blocking (issue 11, point 4) -------------


async def _bounded(call: Callable[[], object]) -> object:
    """Run a synchronous tool call in a thread that a hang cannot hold: a blocked open would
    fail the test after 5 s instead of hanging it."""
    with anyio.fail_after(5):
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


@pytest.mark.anyio
async def test_write_refuses_a_fifo_instead_of_blocking_for_good(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ToolError, match=r"`pipe` is not a regular file \(a named pipe, FIFO\)"):
        await _bounded(lambda: Workspace(tmp_path).write("pipe", "data"))


@pytest.mark.anyio
async def test_write_to_a_fifo_with_a_reader_sends_it_nothing(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    reader = os.open(tmp_path / "pipe", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(ToolError, match="is not a regular file"):
            await _bounded(lambda: Workspace(tmp_path).write("pipe", "data"))
        assert os.read(reader, 10) == b""  # nothing went into the pipe (and no writer is left)
    finally:
        os.close(reader)


@pytest.mark.anyio
async def test_edit_and_a_link_to_a_fifo_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to("pipe")
    ws = Workspace(tmp_path)
    with pytest.raises(ToolError, match="is not a regular file"):
        await _bounded(lambda: ws.edit("pipe", "a", "b"))
    for call in (lambda: ws.write("link", "x"), lambda: ws.read("link")):
        with pytest.raises(ToolError, match="is not a regular file"):
            await _bounded(call)


@pytest.mark.anyio
async def test_a_socket_is_refused_by_write(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(ToolError, match=r"is not a regular file \(a socket\)"):
            await _bounded(lambda: Workspace(tmp_path).write("sock", "x"))
    finally:
        server.close()


@pytest.mark.anyio
async def test_grep_refuses_a_fifo_path_and_skips_one_in_a_directory(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "a.txt").write_text("needle\n")
    ws = Workspace(tmp_path)
    with anyio.fail_after(10):
        with pytest.raises(ToolError, match="is not a regular file"):
            await call_workspace_tool(ws, "Grep", {"pattern": "needle", "path": "pipe"})
        found = await call_workspace_tool(ws, "Grep", {"pattern": "needle"})
        listed = await call_workspace_tool(ws, "Glob", {"pattern": "*"})
    assert found == "a.txt:1: needle"
    assert listed == "a.txt"  # a FIFO is not listed, so no tool is pointed at it
