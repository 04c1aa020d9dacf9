"""SIGKILL real ``stageflow`` processes mid-run, then resume from a new process.

Run A is killed in the middle of a slow stage; run B is killed while the process holding it (a
server) waits at its approval gate. A third process resumes both without waiting for their
leases to expire (the killed owners' pids are gone), records the killed attempt as
interrupted, re-runs it as a ``resume`` attempt, redoes nothing that had finished, and leaves
the gate waiting for a human.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from stageflow import events as ev
from tests.procs import Cli, of_type, owner_pid

pytestmark = pytest.mark.slow

SLOW = """
name: slow_chain
stages:
  - {id: design, agent: architect, produces: [design]}
  - {id: implementation, agent: developer, depends_on: [design], needs: [design.design],
     produces: [patch_summary]}
  - {id: testing, agent: tester, depends_on: [implementation],
     needs: [implementation.patch_summary], produces: [test_report]}
"""

GATED = """
name: gated
stages:
  - id: architecture
    agent: architect
    produces: [design]
    approval: required
  - {id: coding, agent: developer, depends_on: [architecture], needs: [architecture.design],
     produces: [patch_summary]}
"""

# Leases far longer than the test: a resume that waited for expiry would time out instead.
CONFIG = """
[engine]
lease_seconds = 120
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_id(cli: Cli, template: str) -> str | None:
    return next((r.run_id for r in cli.runs() if r.template == template), None)


def _attempts(envs: list[ev.Envelope], stage: str) -> list[ev.AttemptStarted]:
    return [e for e in of_type(envs, ev.AttemptStarted) if e.stage == stage]


def _finished(envs: list[ev.Envelope], stage: str) -> list[ev.AttemptFinished]:
    return [e for e in of_type(envs, ev.AttemptFinished) if e.stage == stage]


def _taken_over(envs: list[ev.Envelope], previous_pid: int) -> ev.LeaseTaken | None:
    return next(
        (
            e
            for e in of_type(envs, ev.LeaseTaken)
            if e.previous_owner and owner_pid(e.previous_owner) == previous_pid
        ),
        None,
    )


def test_sigkilled_runs_resume_in_a_new_process_without_redoing_finished_work(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path)
    cli.write_template(SLOW)
    cli.write_template(GATED)
    cli.write_config(CONFIG)
    cli.set_script({"implementation": {"delay": 60}})
    try:
        # -- run A: killed in the middle of its slow stage -----------------------------------
        proc_a = cli.start("run-a", "run", "slow_chain", "--task", "add a cache", "--wait")
        run_a = cli.poll("run A to be created", lambda: _run_id(cli, "slow_chain"))
        cli.poll(
            "run A's implementation to be running",
            lambda: cli.state(run_a).stages["implementation"].status == "running",
        )
        # -- run B: it waits at its approval gate, held by a server -----------------------------
        code, created = cli.call("run-b", "run", "gated", "--task", "add a flag")
        assert code == 0, created.output()
        found = _run_id(cli, "gated")
        assert found is not None and cli.state(found).status == "waiting"
        run_b = found
        proc_b = cli.start("serve-b", "serve", "--transport", "http", "--port", str(_port()))
        cli.poll(
            "the server to hold run B",
            lambda: owner_pid(cli.run_row(run_b).owner or "x:0:x") == proc_b.pid,
        )
        assert proc_a.popen.poll() is None and proc_b.popen.poll() is None, cli.dump()
        assert owner_pid(cli.run_row(run_a).owner) == proc_a.pid
        assert owner_pid(cli.run_row(run_b).owner) == proc_b.pid

        # While its owner lives, another process must not take the run over.
        code, busy = cli.call("resume-busy", "resume", run_a)
        assert code == 0, busy.output()
        busy_text = busy.stdout_path.read_text("utf-8")
        assert f"run {run_a} is executed by process {proc_a.pid} on " in busy_text
        assert len(of_type(cli.events(run_a), ev.LeaseTaken)) == 1

        proc_a.sigkill()
        proc_b.sigkill()
        killed_a = cli.state(run_a)
        assert killed_a.stages["implementation"].status == "running"  # nobody recorded the end
        assert killed_a.stages["design"].status == "succeeded"
        assert cli.state(run_b).stages["architecture"].status == "awaiting_approval"
        for run_id in (run_a, run_b):  # the dead owners' leases have not expired
            expires = cli.run_row(run_id).lease_expires_at
            assert expires is not None and expires > time.time() + 60

        # -- a new process resumes both; the slow stage is fast now --------------------------
        cli.set_script({})
        resumer = cli.start("resume", "resume", "--all", "--wait")
        cli.poll("run A to complete", lambda: cli.state(run_a).ended == "completed")
        cli.poll(
            "the resumer to take run B over",
            lambda: _taken_over(cli.events(run_b), proc_b.pid),
        )
        envs_b = cli.events(run_b)
        # The gate stayed closed: taken over, but nobody decided it.
        waiting_b = cli.state(run_b)
        assert waiting_b.status == "waiting"
        assert waiting_b.stages["architecture"].status == "awaiting_approval"
        assert of_type(envs_b, ev.ApprovalDecided) == []
        assert _attempts(envs_b, "coding") == []

        code, approve = cli.call("approve-b", "approve", run_b, "--approver", "alice")
        assert code == 0, approve.output()
        assert resumer.wait(timeout=15) == 0, resumer.output()
    finally:
        cli.cleanup()

    # -- run A: one interrupted attempt, re-run as "resume"; nothing finished is redone ------
    envs_a = cli.events(run_a)
    assert cli.state(run_a).ended == "completed"
    started = Counter(e.stage for e in of_type(envs_a, ev.AttemptStarted))
    assert started == {"design": 1, "implementation": 2, "testing": 1}
    assert [f.outcome for f in _finished(envs_a, "design")] == ["passed"]
    assert [f.outcome for f in _finished(envs_a, "testing")] == ["passed"]
    assert [(a.attempt, a.kind) for a in _attempts(envs_a, "implementation")] == [
        (1, "initial"),
        (2, "resume"),
    ]
    impl = _finished(envs_a, "implementation")
    assert [(f.attempt, f.outcome) for f in impl] == [(1, "interrupted"), (2, "passed")]
    taken_a = _taken_over(envs_a, proc_a.pid)
    assert taken_a is not None and owner_pid(taken_a.owner) == resumer.pid
    # The interruption is recorded by the new owner, after it took the lease.
    seq_taken = next(e.seq for e in envs_a if e.event == taken_a)
    interrupted = next(e for e in envs_a if e.event == impl[0])
    assert interrupted.seq > seq_taken and owner_pid(interrupted.actor) == resumer.pid

    # -- run B: the gate was decided once, by the human, and the run went on -----------------
    envs_b = cli.events(run_b)
    assert cli.state(run_b).ended == "completed"
    decided = of_type(envs_b, ev.ApprovalDecided)
    assert [(d.stage, d.decision, d.approver, d.automatic) for d in decided] == [
        ("architecture", "approve", "alice", False)
    ]
    started_b = Counter(e.stage for e in of_type(envs_b, ev.AttemptStarted))
    assert started_b == {"architecture": 1, "coding": 1}
    taken_b = _taken_over(envs_b, proc_b.pid)
    assert taken_b is not None and owner_pid(taken_b.owner) == resumer.pid

    for run_id in (run_a, run_b):
        code, audit = cli.call(f"audit-{run_id}", "audit", run_id, "--verify")
        assert code == 0, audit.output()
        assert "chain verified" in audit.stdout_path.read_text(encoding="utf-8")
