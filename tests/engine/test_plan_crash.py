"""SIGKILL a real ``stageflow`` process running ``plan_execute_audit``, then resume in a new one.

Once right after the plan's commit (the expansion is in the log, its first items have started
and none has finished), once in the middle of the last item (the two before it are done). The
new process resumes with the same expansion (one ``plan_expanded``, the same sub-stage specs),
redoes nothing that finished, and ``audit --verify`` passes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stageflow import events as ev
from stageflow.cli.exits import EXIT_WAITING
from tests.procs import Cli, of_type, owner_pid

pytestmark = pytest.mark.slow

CONFIG = """
[engine]
lease_seconds = 120
"""  # far longer than the test: a resume that waited for expiry would time out

ITEMS = ("execute.t1", "execute.t2", "execute.t3")


def _run_id(cli: Cli) -> str | None:
    return next((r.run_id for r in cli.runs() if r.template == "plan_execute_audit"), None)


def _kill_and_resume(cli: Cli, running: tuple[str, ...]) -> tuple[str, dict[str, int], int]:
    """Start the run, SIGKILL its process once ``running`` are all running, resume it in a new
    process until it waits at its approval; returns the run id, the attempts per stage before
    the kill, and the killed process's pid."""
    proc = cli.start("run", "run", "plan_execute_audit", "--task", "add a CSV export", "--wait")
    run_id = cli.poll("the run to be created", lambda: _run_id(cli))
    cli.poll(
        f"{', '.join(running)} to be running",
        lambda: all(
            s in cli.state(run_id).stages and cli.state(run_id).stages[s].status == "running"
            for s in running
        ),
    )
    killed = cli.state(run_id)
    assert proc.popen.poll() is None, cli.dump()
    proc.sigkill()
    before = {sid: st.attempt for sid, st in killed.stages.items()}
    cli.set_script({})  # the items are quick now
    resumer = cli.start("resume", "resume", run_id, "--wait")
    cli.poll("the run to wait at its approval", lambda: cli.state(run_id).status == "waiting")
    after = cli.state(run_id)
    assert after.children == killed.children == {"execute": ITEMS}
    for sid in ITEMS:  # the same sub-stages, derived again from the same log entries
        assert after.stage_spec(sid) == killed.stage_spec(sid)
    assert resumer.wait(timeout=30) == EXIT_WAITING, resumer.output()  # stopped at the gate
    code, approve = cli.call("approve", "approve", run_id, "--stage", "approval")
    assert code == 0, approve.output()
    return run_id, before, proc.pid


def _verify(cli: Cli, run_id: str) -> list[ev.Envelope]:
    envs = cli.events(run_id)
    assert cli.state(run_id).ended == "completed"
    assert len(of_type(envs, ev.PlanExpanded)) == 1
    code, audit = cli.call("audit", "audit", run_id, "--verify")
    assert code == 0, audit.output()
    assert "chain verified" in audit.stdout_path.read_text(encoding="utf-8")
    return envs


def test_a_kill_right_after_the_plan_commit_resumes_the_same_expansion(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.write_config(CONFIG)
    cli.set_script({"execute.t1": {"delay": 60}, "execute.t2": {"delay": 60}})
    try:
        run_id, before, pid = _kill_and_resume(cli, ("execute.t1", "execute.t2"))
        assert before["plan"] == 1 and before["execute.t3"] == 0
    finally:
        cli.cleanup()
    envs = _verify(cli, run_id)
    started = Counter(e.stage for e in of_type(envs, ev.AttemptStarted))
    assert started["plan"] == 1  # the plan was not redone
    assert (started["execute.t1"], started["execute.t2"], started["execute.t3"]) == (2, 2, 1)
    kinds = [(e.stage, e.kind) for e in of_type(envs, ev.AttemptStarted) if e.attempt == 2]
    assert sorted(kinds) == [("execute.t1", "resume"), ("execute.t2", "resume")]
    interrupted = [f for f in of_type(envs, ev.AttemptFinished) if f.outcome == "interrupted"]
    assert sorted(f.stage for f in interrupted) == ["execute.t1", "execute.t2"]
    taken = [t for t in of_type(envs, ev.LeaseTaken) if t.previous_owner]
    # the resumer took the dead process's lease (the approving process then took the
    # resumer's, which stopped at the gate)
    assert owner_pid(taken[0].previous_owner) == pid


def test_a_kill_in_the_middle_of_an_item_redoes_only_that_item(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.write_config(CONFIG)
    cli.set_script({"execute.t3": {"delay": 60}})
    try:
        run_id, before, _ = _kill_and_resume(cli, ("execute.t3",))
        assert (before["execute.t1"], before["execute.t2"], before["execute.t3"]) == (1, 1, 1)
    finally:
        cli.cleanup()
    envs = _verify(cli, run_id)
    started = Counter(e.stage for e in of_type(envs, ev.AttemptStarted))
    assert started == {
        "plan": 1,
        "execute.t1": 1,
        "execute.t2": 1,
        "execute.t3": 2,
        "integrate": 1,
        "audit": 1,
        "approval": 1,
    }
    finished = {(f.stage, f.attempt): f.outcome for f in of_type(envs, ev.AttemptFinished)}
    assert finished[("execute.t3", 1)] == "interrupted"
    assert finished[("execute.t3", 2)] == "passed"
