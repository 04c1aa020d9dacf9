"""The terminal tells the truth: where a run stands when a command returns, said once, with
the command to type next, and the exit code documented in the README."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from stageflow.cli.commands import os_user
from stageflow.store.store import Store
from stageflow.subagents.select import NO_RUNNER_MESSAGE
from tests.cli.harness import PIPELINE, Cli

EXIT_WAITING, EXIT_FAILED = 5, 1


def test_run_wait_stops_at_a_gate_saying_what_waits_and_how_to_approve(cli: Cli) -> None:
    cli.write_template(PIPELINE)
    result = cli("run", "pipeline", "--task", "add CSV export", "--wait")
    assert result.code == EXIT_WAITING, result.err
    run_id = result.out.split()[2]
    assert "waiting: check (approval, attempt 1)" in result.out
    assert f"`stageflow approve {run_id} --stage check --attempt 1`" in result.out
    approved = cli("approve", run_id, "--wait")
    assert approved.code == 0, approved.err
    assert f"recorded: approve of stage 'check' by {os_user()}" in approved.out
    assert "[completed]" in approved.out


def test_a_run_without_a_runner_says_why_once(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEFLOW_RUNNER", "auto")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no `claude`
    cli.write_template(PIPELINE)
    result = cli("run", "pipeline", "--task", "add CSV export")
    assert result.code == EXIT_FAILED
    assert result.out.count(NO_RUNNER_MESSAGE) == 1, result.out
    assert "runner: auto (no runner available)" in result.out
    run_id = result.out.split()[2]
    status = cli("status", run_id)
    assert status.out.count(NO_RUNNER_MESSAGE) == 1, status.out


def test_after_a_retry_with_another_runner_the_header_shows_the_runner_in_use(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEFLOW_RUNNER", "auto")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    cli.write_template(PIPELINE)
    failed = cli("run", "pipeline", "--task", "add CSV export")
    run_id = failed.out.split()[2]
    assert f"run {run_id}  pipeline  [failed]  runner: auto (no runner available)" in failed.out
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    retried = cli("retry", run_id)
    assert f"run {run_id}  pipeline  [waiting]  runner: offline" in retried.out, retried.out
    assert cli.status(run_id).runner == "offline"


@pytest.mark.slow
def test_approve_while_another_process_runs_the_run_says_recorded_and_who_runs_it(
    cli: Cli, tmp_path: Path
) -> None:
    cli.write_template(PIPELINE)
    view = cli.run("pipeline")
    assert view.status == "waiting"
    # a server for the project adopts the active run: it holds the lease from now on
    server = subprocess.Popen(
        [sys.executable, "-m", "stageflow", "serve", "--project", str(cli.project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "STAGEFLOW_RUNNER": "offline"},
    )
    try:
        owner = anyio.run(_owner_other_than, cli.project, view.run_id, view.owner)
        assert owner.split(":")[1] == str(server.pid)
        result = cli("approve", view.run_id)
        assert result.code == 0, result.err
        assert f"recorded: approve of stage 'check' by {os_user()}" in result.out
        assert (
            f"run {view.run_id} is executed by process {server.pid} on {owner.split(':')[0]}, "
            "which continues it"
        ) in result.out
    finally:
        server.terminate()
        server.wait(timeout=30)
        assert server.stdin is not None
        server.stdin.close()


async def _owner_other_than(project: Path, run_id: str, previous: str | None) -> str:
    deadline = time.monotonic() + 30
    async with await Store.open(project / ".stageflow" / "state.db") as store:
        while time.monotonic() < deadline:
            row = await store.get_run(run_id)
            if row.owner and row.owner != previous and row.lease_expires_at:
                return row.owner
            await anyio.sleep(0.1)
    raise AssertionError("the server never took the run's lease")


WRITES = """\
name: writes
description: a command stage that writes a file
stages:
  - id: design
    agent: architect
    produces: [design]
  - id: build
    run: sh -c 'echo built > made_by_stage.txt'
    depends_on: [design]
"""


def test_every_stage_of_an_offline_run_in_git_works_in_the_runs_worktree(cli: Cli) -> None:
    """The README's promise holds for the offline runner too: a command stage writes into the
    run's worktree, never into the user's working tree."""
    project = cli.project
    project.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "README.md").write_text("hello\n", encoding="utf-8")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    cli.write_template(WRITES)
    view = cli.run("writes")
    assert view.status == "completed"
    assert not (project / "made_by_stage.txt").exists()  # the user's tree is untouched
    worktree = project / ".stageflow" / "worktrees" / view.run_id
    assert (worktree / "made_by_stage.txt").read_text(encoding="utf-8") == "built\n"
    assert view.workspace is not None and view.workspace.path == str(worktree)
    status = subprocess.run(
        [*git, "status", "--porcelain"], capture_output=True, text=True, check=True
    )
    assert status.stdout == ""  # .stageflow/ is excluded, nothing else changed
