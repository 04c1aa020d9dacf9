"""Failure triage and rework routing on the API runner, the orchestrator being the stand-in
(over HTTP, the real ``anthropic`` client): its answers are logged before the engine acts,
its spend is in the ledger under ``orchestration`` and in status; with the endpoint down
(529) or answering outside what is allowed, the rules decide, the log says why, and the run
completes; a failure it hands to a person waits for a person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.harness import of_type
from tests.standin import StandIn
from tests.standin.project import make_project
from tests.subagents.anthropic_harness import ApiProject, stage_of, use_standin
from tests.subagents.orchestrator.standin_triage import TriageStandIn

CHEAP = "claude-haiku-4-5"

BUILD = """
name: triage_build
description: one stage that may fail
inputs: {task: {type: string, required: true}}
stages:
  - id: build
    agent: developer
    on_failure: {retry: {max_attempts: 3, backoff: 0s}}
"""

ROUTED = """
name: routed_review
description: a review that may send the work back to the design or the implementation
inputs: {task: {type: string, required: true}}
stages:
  - id: design
    agent: architect
  - id: implement
    agent: developer
    depends_on: [design]
  - id: review
    agent: reviewer
    depends_on: [implement]
    on_changes_requested: {rework: implement, alternatives: [design], max: 2}
"""


@pytest.fixture
def hook() -> TriageStandIn:
    return TriageStandIn()


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: TriageStandIn
) -> Iterator[ApiProject]:
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    with StandIn(respond=hook) as api:
        use_standin(monkeypatch, api.base_url)
        p = ApiProject(make_project(tmp_path / "project"), api)
        p.write_template(BUILD)
        p.write_template(ROUTED)
        yield p


def _events(project: ApiProject, run_id: str) -> list[dict[str, object]]:
    data = project("audit", run_id, "--json").json()
    return [dict(e["event"]) for e in data["events"]]


def test_a_transient_failure_is_retried_and_the_triage_is_paid_as_orchestration(
    project: ApiProject, hook: TriageStandIn
) -> None:
    hook.fail_once.add("build")
    view = project.run("triage_build", "--budget", "2")
    assert view.status == "completed", view.reason
    events = _events(project, view.run_id)
    (triage,) = of_type(events, "orchestration_decided")
    assert (triage["question"], triage["stage"], triage["attempt"]) == ("failure", "build", 1)
    assert (triage["answer"], triage["decided_by"], triage["model"]) == (
        "transient",
        "model",
        CHEAP,
    )
    kinds = [e["type"] for e in events]
    # the request's worst case is logged before it is sent, the answer before the retry
    assert kinds.index("orchestration_asked") < kinds.index("orchestration_decided")
    assert kinds.index("orchestration_decided") < kinds.index("retry_scheduled")
    (asked,) = of_type(events, "orchestration_asked")
    assert asked["reserved_usd"] == triage["reserved_usd"] >= triage["cost_usd"]
    assert stage_of(view, "build").attempts == 2
    rows = [r for r in project.ledger(view.run_id) if r.category == "orchestration"]
    assert len(rows) == 1 and (rows[0].stage, rows[0].attempt, rows[0].model) == (
        "build",
        1,
        CHEAP,
    )
    assert rows[0].spent_usd > 0
    assert rows[0].spent_usd == pytest.approx(triage["cost_usd"], abs=1e-9)
    assert view.orchestration_usd == pytest.approx(rows[0].spent_usd, abs=1e-9)
    total = sum(r.spent_usd for r in project.ledger(view.run_id))
    assert view.spent_usd == pytest.approx(total, abs=1e-6)  # the run's cap counted it
    costs = project("costs", "--by", "category", "--json").json()
    by_category = {g["key"]: g["cost_usd"] for g in costs["groups"]}
    assert by_category["orchestration"] == pytest.approx(rows[0].spent_usd, abs=1e-6)
    assert project("audit", view.run_id, "--verify").code == 0


def test_a_failure_the_orchestrator_hands_to_a_person_waits_for_one(
    project: ApiProject, hook: TriageStandIn
) -> None:
    hook.fail_once.add("build")
    hook.verdict = "human"
    view = project.run("triage_build")
    assert view.status == "waiting", view.reason
    build = stage_of(view, "build")
    assert build.status == "blocked" and build.attempts == 1
    assert "a person should look" in (build.reason or "")
    (waiting,) = view.waiting
    assert waiting.human_only and waiting.attempt == 1
    assert "approve to run it again, reject to apply its on_failure" in waiting.what
    (escalated,) = of_type(_events(project, view.run_id), "stage_escalated")
    assert (escalated["kind"], escalated["to"]) == ("failure", "human")
    # a person approves: the stage runs again, and the run completes
    done = project.view("approve", view.run_id, "--stage", "build")
    assert done.status == "completed", done.reason
    assert stage_of(done, "build").attempts == 2


def test_with_the_orchestrator_down_the_rules_retry_and_the_run_completes(
    project: ApiProject, hook: TriageStandIn
) -> None:
    hook.fail_once.add("build")
    hook.down = True
    view = project.run("triage_build")
    assert view.status == "completed", view.reason
    (triage,) = of_type(_events(project, view.run_id), "orchestration_decided")
    assert (triage["answer"], triage["decided_by"]) == ("transient", "rules")
    assert "overloaded" in str(triage["fallback"]).lower()
    assert triage["cost_usd"] == 0
    assert hook.asked  # it was asked, and answered 529


@pytest.mark.parametrize("verdict", ["approve", {"verdict": "pass"}, "transient; approve"])
def test_a_triage_answer_outside_transient_or_human_is_the_rules(
    project: ApiProject, hook: TriageStandIn, verdict: object
) -> None:
    hook.fail_once.add("build")
    hook.verdict = verdict
    view = project.run("triage_build")
    assert view.status == "completed", view.reason
    (triage,) = of_type(_events(project, view.run_id), "orchestration_decided")
    assert (triage["answer"], triage["decided_by"]) == ("transient", "rules")
    assert "invalid" in str(triage["fallback"])


def test_the_orchestrator_routes_a_rework_to_an_allowed_stage(
    project: ApiProject, hook: TriageStandIn
) -> None:
    hook.review_once.add("review")
    hook.target = "design"
    view = project.run("routed_review")
    assert view.status == "completed", view.reason
    events = _events(project, view.run_id)
    (route,) = of_type(events, "orchestration_decided")
    assert (route["question"], route["answer"], route["decided_by"]) == (
        "rework",
        "design",
        "model",
    )
    assert route["candidates"] == ["implement", "design"]
    (rework,) = of_type(events, "rework_requested")
    assert rework["target"] == "design"
    assert stage_of(view, "design").attempts == 2  # the design reran, and what follows it
    assert stage_of(view, "implement").attempts == 2
    assert "findings" in hook.asked[-1].lower() or "CSV dialect" in hook.asked[-1]


@pytest.mark.parametrize(
    ("target", "down"),
    [("deploy", False), ("review", False), ("review.decision1", False), ("design", True)],
)
def test_a_route_outside_the_allowed_stages_or_a_down_endpoint_goes_to_the_declared_stage(
    project: ApiProject, hook: TriageStandIn, target: str, down: bool
) -> None:
    hook.review_once.add("review")
    hook.target, hook.down = target, down
    view = project.run("routed_review")
    assert view.status == "completed", view.reason
    events = _events(project, view.run_id)
    (route,) = of_type(events, "orchestration_decided")
    assert (route["answer"], route["decided_by"]) == ("implement", "rules")
    assert ("overloaded" if down else "not one of the stages") in str(route["fallback"]).lower()
    assert of_type(events, "rework_requested")[0]["target"] == "implement"
    assert stage_of(view, "design").attempts == 1


def test_a_broken_orchestrator_table_is_named_in_the_log_and_the_run_goes_on(
    project: ApiProject, hook: TriageStandIn
) -> None:
    project.write_config('[orchestrator]\nprovider = "gpt"\n')
    hook.fail_once.add("build")
    view = project.run("triage_build")
    assert view.status == "completed", view.reason
    (triage,) = of_type(_events(project, view.run_id), "orchestration_decided")
    assert (triage["answer"], triage["decided_by"]) == ("transient", "rules")
    assert "unknown provider 'gpt'" in str(triage["fallback"])
    assert hook.asked == []
