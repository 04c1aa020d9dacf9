"""A process killed with a model request in flight: the request was recorded as started with
its reservation, so the ledger and the run count it, and nothing is spent past the cap.

``stageflow run`` and ``stageflow resume`` run in processes of their own against the stand-in;
the stand-in holds every third request until the process sending it has been SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from stageflow.store.store import Store
from tests.standin import StandIn
from tests.standin.project import TASK, make_project
from tests.standin.wire import Json
from tests.subagents.anthropic_harness import ApiProject, stage_of, use_standin

KILLS = 4
BUDGET = 3.0


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProject]:
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    with StandIn() as api:
        use_standin(monkeypatch, api.base_url)
        yield ApiProject(make_project(tmp_path / "project"), api)


class Holder:
    """Holds every ``every``-th message request until ``release()``; ``held`` is set then."""

    def __init__(self, every: int) -> None:
        self.every, self.seen = every, 0
        self.held, self.gate = threading.Event(), threading.Event()
        self.on = True

    def __call__(self, body: Json) -> None:
        self.seen += 1
        if self.on and self.seen % self.every == 0:
            self.held.set()
            self.gate.wait(60)
        # the scripted agent answers (to a socket that may be closed by then)

    def release(self) -> None:
        self.gate.set()

    def rearm(self) -> None:
        self.held.clear()
        self.gate.clear()


def _spawn(project: ApiProject, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stageflow", *argv, "--project", str(project.root), "--json"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _only_run(project: ApiProject) -> str:
    async def read() -> str:
        async with await Store.open(project.root / ".stageflow" / "state.db") as store:
            [row] = await store.list_runs(limit=5)
            return row.run_id

    return anyio.run(read)


def test_requests_in_flight_at_kills_are_counted_and_the_ledger_matches_the_provider(
    project: ApiProject,
) -> None:
    api, holder = project.api, Holder(every=3)
    api.respond = holder
    run_id = ""
    for cycle in range(KILLS):
        if cycle == 0:
            proc = _spawn(project, "run", "feature_development", "--task", TASK, "--budget", "3")
        else:
            proc = _spawn(project, "resume", run_id)
        assert holder.held.wait(120), f"cycle {cycle}: no request reached the stand-in"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        holder.release()
        run_id = run_id or _only_run(project)

        # the request the dead process had in flight is in the ledger, not finished, and its
        # reservation counts: in the ledger's total and in the live spend status shows
        rows = project.ledger(run_id)
        assert len(rows) == len(api.message_requests())
        open_rows = [r for r in rows if not r.done]  # one per kill so far
        assert len(open_rows) == cycle + 1
        open_row = open_rows[-1]
        assert open_row.reserved_usd > 0 and open_row.spent_usd == open_row.reserved_usd
        view = project.status(run_id)
        assert view.spent_usd == pytest.approx(sum(r.spent_usd for r in rows), abs=1e-9)
        running = [s for s in view.stages if s.status == "running"]
        assert [s.id for s in running] == [open_row.stage]
        assert running[0].usage.cost_usd >= open_row.reserved_usd
        holder.rearm()

    holder.on = False
    view = project.view("resume", run_id)
    view, _ = project.approve_until_done(view)
    assert view.status == "completed", view.reason

    rows = project.ledger(run_id)
    # every request the provider saw is in the ledger: the four killed ones as reservations
    assert len(rows) == len(api.message_requests())
    assert sum(1 for r in rows if not r.done) == KILLS
    interrupted = [a for s in view.stages for a in s.history if a.outcome == "interrupted"]
    assert len(interrupted) == KILLS
    assert all(a.usage.cost_usd > 0 for a in interrupted)
    assert view.spent_usd == pytest.approx(sum(r.spent_usd for r in rows), abs=1e-9)
    assert view.spent_usd <= BUDGET
    assert stage_of(view, "architecture").status == "succeeded"
