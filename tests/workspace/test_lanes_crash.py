"""A stageflow process SIGKILLed in the middle of a join's merge or of a land, on a real git
repository, then resumed by another: exactly one merge (one land), and ``audit --verify``
passes. The killed process is ``lanes_child``; its ``git`` hangs at the chosen command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stageflow import events as ev
from stageflow.errors import InvalidState
from tests.workspace.lanes_child import TWO_WRITERS, kill_git, script
from tests.workspace.lanes_kit import git, open_lanes, prepare_project

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]
MERGE = "merge --no-ff --no-edit"  # the join's merge into the run branch
LAND = "merge --ff-only -q"  # the land moving the user's checked-out branch


def _kill_child_at(tmp_path: Path, project: Path, when: str, match: str, *args: str) -> None:
    """Run ``lanes_child`` until its git reaches ``match`` (``when``: before, after, half),
    then SIGKILL its whole process group and reap it."""
    flag = tmp_path / f"killed-{when}"
    bin_dir = tmp_path / "bin"
    kill_git(bin_dir)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO_ROOT),
        "KILL_AT": when,
        "KILL_MATCH": match,
        "KILL_FLAG": str(flag),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.workspace.lanes_child", str(project), *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while not flag.exists():
            if child.poll() is not None:
                err = child.stderr.read().decode() if child.stderr else ""
                pytest.fail(f"the child ended ({child.returncode}) before the kill:\n{err[-3000:]}")
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)  # reaped: its pid is dead for the next owner
        if child.stderr:
            child.stderr.close()


def _merges(envs: list[ev.Envelope], op: str) -> list[tuple[str, str | None, str | None]]:
    return [
        (type(e.event).__name__, e.event.stage, getattr(e.event, "outcome", None))
        for e in envs
        if isinstance(e.event, ev.GitStarted | ev.GitFinished) and e.event.op == op
    ]


@pytest.mark.parametrize("when", ["before", "half", "after"])
async def test_a_sigkill_during_a_join_merge_resumes_with_exactly_one_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    project = prepare_project(tmp_path, monkeypatch, TWO_WRITERS)
    _kill_child_at(tmp_path, project, when, MERGE, "run")
    rid = (tmp_path / "run_id").read_text()
    trunk = project / ".stageflow" / "worktrees" / rid
    if when == "half":  # the kill left the run's worktree in the middle of a merge
        assert git(trunk, "rev-parse", "-q", "--verify", "MERGE_HEAD").strip()
    if when == "after":  # the merge commit was made; the log does not know it yet
        assert len(git(trunk, "log", "-1", "--format=%P").split()) == 2
    async with open_lanes(project) as env:
        script(env.writer)
        left = await env.service.state(rid)
        assert left.git.pending is not None
        assert (left.git.pending.op, left.git.pending.stage) == ("merge", "backend")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.end_reason
        envs = await env.store.load_events(rid)
        report = await env.service.audit(rid)
    assert report.ok, report.problems
    # the merge the dead process had logged was redone once, not made twice
    assert _merges(envs, "merge") == [
        ("GitStarted", "backend", None),
        ("GitFinished", "backend", "done"),
        ("GitStarted", "frontend", None),
        ("GitFinished", "frontend", "done"),
    ]
    run_branch = f"stageflow/{rid}"
    merges = git(project, "log", "--merges", "--format=%s", run_branch).splitlines()
    assert sorted(merges) == [
        f"Merge stage 'backend' (attempt 1) into {run_branch}",
        f"Merge stage 'frontend' (attempt 1) into {run_branch}",
    ]
    assert git(trunk, "status", "--porcelain") == ""
    assert git(project, "show", f"{run_branch}:README.md").startswith("# demo")
    for path in ("api.py", "ui.js"):
        assert git(project, "show", f"{run_branch}:{path}")
    assert git(project, "status", "--porcelain") == ""  # the user's tree never moved
    assert git(project, "log", "--format=%s", "main").splitlines() == ["init"]


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_sigkill_during_a_land_is_finished_by_the_next_land_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    project = prepare_project(tmp_path, monkeypatch, TWO_WRITERS)
    async with open_lanes(project) as env:
        script(env.writer)
        state = await env.service.start_run("two_writers", "add the api and the ui")
        rid = state.run_id
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.end_reason
    _kill_child_at(tmp_path, project, when, LAND, "land", rid)
    async with open_lanes(project) as env:
        before = await env.service.state(rid)
        assert before.git.pending is not None and before.git.pending.op == "land"
        state = await env.service.land(rid)  # finds the dead process's land and redoes it
        envs = await env.store.load_events(rid)
        report = await env.service.audit(rid)
        with pytest.raises(InvalidState, match="already landed into main"):
            await env.service.land(rid)
    assert report.ok, report.problems
    assert [x.into for x in state.git.landed] == ["main"]
    started = ("GitStarted", None, None)  # the second: the redo taking the land over
    assert _merges(envs, "land") == [started, started, ("GitFinished", None, "done")]
    subjects = git(project, "log", "--format=%s", "main").splitlines()
    assert len(subjects) == 2 and subjects[1] == "init"  # one land commit, not two
    assert state.git.landed[0].commit == git(project, "rev-parse", "main").strip()
    assert (project / "api.py").read_text() == "def api(): ...\n"
    assert git(project, "status", "--porcelain") == ""
