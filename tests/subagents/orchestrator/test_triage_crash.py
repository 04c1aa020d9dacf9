"""A ``stageflow run`` process SIGKILLed after the orchestrator's triage answer was logged: the
resumed run reads the answer back and never asks again."""

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
from tests.cli.harness import of_type
from tests.standin import StandIn
from tests.standin.project import TASK, make_project
from tests.standin.wire import Json
from tests.subagents.anthropic_harness import ApiProject, stage_of, use_standin
from tests.subagents.orchestrator.standin_triage import TriageStandIn, tools_of
from tests.subagents.orchestrator.test_api_triage import BUILD


class HoldAfterTriage(TriageStandIn):
    """Holds the first agent request after the triage answer until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.held, self.gate = threading.Event(), threading.Event()

    def __call__(self, body: Json) -> object:
        if self.asked and "answer" not in tools_of(body) and not self.held.is_set():
            self.held.set()
            self.gate.wait(60)
        return super().__call__(body)


@pytest.fixture
def hook() -> HoldAfterTriage:
    return HoldAfterTriage()


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: HoldAfterTriage
) -> Iterator[ApiProject]:
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    with StandIn(respond=hook) as api:
        use_standin(monkeypatch, api.base_url)
        p = ApiProject(make_project(tmp_path / "project"), api)
        p.write_template(BUILD)
        yield p


def _only_run(project: ApiProject) -> str:
    async def read() -> str:
        async with await Store.open(project.root / ".stageflow" / "state.db") as store:
            [row] = await store.list_runs(limit=5)
            return row.run_id

    return anyio.run(read)


def test_a_run_killed_after_the_triage_answer_resumes_without_asking_again(
    project: ApiProject, hook: HoldAfterTriage
) -> None:
    hook.fail_once.add("build")
    argv = ["run", "triage_build", "--task", TASK, "--project", str(project.root), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stageflow", *argv],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hook.held.wait(120), "the retry never reached the stand-in"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        hook.gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(hook.asked) == 1
    run_id = _only_run(project)
    view = project.view("resume", run_id)
    assert view.status == "completed", view.reason
    assert len(hook.asked) == 1  # read back from the log, not asked again
    events = [dict(e["event"]) for e in project("audit", run_id, "--json").json()["events"]]
    (triage,) = of_type(events, "orchestration_decided")
    assert (triage["answer"], triage["decided_by"]) == ("transient", "model")
    outcomes = [a.outcome for a in stage_of(view, "build").history]
    assert outcomes == ["failed", "interrupted", "passed"]


class HoldTheQuestion(TriageStandIn):
    """Holds the first orchestrator request until ``gate`` is set (its process is killed)."""

    def __init__(self) -> None:
        super().__init__()
        self.held, self.gate = threading.Event(), threading.Event()

    def __call__(self, body: Json) -> object:
        if "answer" in tools_of(body) and not self.held.is_set():
            self.asked.append("(held)")
            self.held.set()
            self.gate.wait(60)
            return None  # to a socket that is closed by then
        return super().__call__(body)


def test_a_run_killed_with_the_question_in_flight_counts_its_reservation_and_asks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    hook = HoldTheQuestion()
    hook.fail_once.add("build")
    with StandIn(respond=hook) as api:
        use_standin(monkeypatch, api.base_url)
        project = ApiProject(make_project(tmp_path / "project"), api)
        project.write_template(BUILD)
        argv = ["run", "triage_build", "--task", TASK, "--budget", "1"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "stageflow", *argv, "--project", str(project.root)],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert hook.held.wait(120), "the question never reached the stand-in"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            hook.gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        run_id = _only_run(project)
        events = [dict(e["event"]) for e in project("audit", run_id, "--json").json()["events"]]
        (asked,) = of_type(events, "orchestration_asked")
        assert asked["reserved_usd"] > 0 and not of_type(events, "orchestration_decided")
        # the request the dead process had in flight counts, in the log and the ledger alike
        rows = project.ledger(run_id)
        view = project.status(run_id)
        assert view.spent_usd == pytest.approx(sum(r.spent_usd for r in rows), abs=1e-9)
        assert view.orchestration_usd == pytest.approx(asked["reserved_usd"], abs=1e-9)

        done = project.view("resume", run_id)
        assert done.status == "completed", done.reason
        assert len(hook.asked) == 2  # unanswered: asked again
        rows = project.ledger(run_id)
        assert done.spent_usd == pytest.approx(sum(r.spent_usd for r in rows), abs=1e-9)
        assert done.spent_usd <= 1
        events = [dict(e["event"]) for e in project("audit", run_id, "--json").json()["events"]]
        assert len(of_type(events, "orchestration_asked")) == 2
        (triage,) = of_type(events, "orchestration_decided")
        assert triage["decided_by"] == "model"
