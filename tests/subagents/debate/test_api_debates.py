"""``consensus_building`` on the API runner against the Messages-API stand-in: participants on
two models, the moderator on the cheap one, the ADR in the knowledge base; the orchestrator
down (529) or answering invalidly falls back to the rules and the run completes; and
``template="auto"`` by the stand-in as the orchestrator model and by the rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from stageflow.config import load_settings
from stageflow.subagents.orchestrator.choose import choose_template
from tests.cli.harness import of_type
from tests.standin import StandIn
from tests.standin.project import make_project
from tests.subagents.anthropic_harness import ApiProject, stage_of, use_standin
from tests.subagents.debate.standin_debate import DebateStandIn, tools_of

QUESTION = "Should we replace the hand-written SQL layer with an ORM?"
CHEAP = "claude-haiku-4-5"


@pytest.fixture
def debaters() -> DebateStandIn:
    return DebateStandIn(
        {"login accepts an empty password": "bugfix", "add CSV export": "feature_development"}
    )


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debaters: DebateStandIn
) -> Iterator[ApiProject]:
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    with StandIn(respond=debaters) as api:
        use_standin(monkeypatch, api.base_url)
        yield ApiProject(make_project(tmp_path / "project"), api)


def _events(project: ApiProject, run_id: str) -> list[dict[str, object]]:
    data = project("audit", run_id, "--json").json()
    return [dict(e["event"]) for e in data["events"]]


def test_consensus_building_on_the_api_runner(project: ApiProject) -> None:
    view = project.run("consensus_building", "--budget", "3", task=QUESTION)
    assert view.status == "completed", view.reason
    events = _events(project, view.run_id)
    turns, verdicts = of_type(events, "debate_turn"), of_type(events, "debate_verdict")
    assert len(verdicts) >= 2  # rounds.min, though round 1 already agreed 2 of 3
    assert {t["model"] for t in turns} == {"claude-opus-4-7", "claude-sonnet-4-6"}
    assert all(v["decided_by"] == "model" and v["model"] == CHEAP for v in verdicts), [
        (v["decided_by"], v["model"], v["fallback"]) for v in verdicts
    ]
    assert verdicts[0]["proposed"] == "continue" and verdicts[-1]["action"] == "conclude"
    moderator = [r for r in project.api.message_requests() if "answer" in tools_of(r.body)]
    assert len(moderator) == len(verdicts) and {r.body["model"] for r in moderator} == {CHEAP}
    # every request is in the ledger, and the moderator's share is the orchestration spend
    rows = project.ledger(view.run_id)
    assert len(rows) == len(project.api.message_requests())
    orchestration = [r for r in rows if r.category == "orchestration"]
    assert {r.model for r in orchestration} == {CHEAP} and len(orchestration) == len(verdicts)
    assert {r.category for r in rows if r.model != CHEAP} == {"agent"}
    cheap = sum(r.spent_usd for r in orchestration)
    assert view.orchestration_usd == pytest.approx(cheap, abs=1e-9) and cheap > 0
    costs = project("costs", "--by", "category", "--json").json()
    by_category = {g["key"]: g["cost_usd"] for g in costs["groups"]}
    assert by_category["orchestration"] == pytest.approx(cheap, abs=1e-6)
    assert set(by_category) == {"agent", "orchestration"}
    assert view.spent_usd <= 3
    found = project("knowledge", "search", "ORM hand-written SQL", "--json").json()
    assert any(hit["type"] == "decision" for hit in found["results"][:3]), found
    assert project("audit", view.run_id, "--verify").code == 0


@pytest.mark.parametrize("fault", ["down", "invalid"])
def test_the_moderator_falls_back_to_rules_and_the_run_completes(
    project: ApiProject, debaters: DebateStandIn, fault: str
) -> None:
    setattr(debaters, fault, True)
    view = project.run("consensus_building", task=QUESTION)
    assert view.status == "completed", view.reason
    verdicts = of_type(_events(project, view.run_id), "debate_verdict")
    assert len(verdicts) >= 2 and all(v["decided_by"] == "rules" for v in verdicts)
    why = "overloaded" if fault == "down" else "invalid at agreement"
    assert all(why in str(v["fallback"]).lower() for v in verdicts), [
        (v["decided_by"], v["model"], v["fallback"]) for v in verdicts
    ]
    assert stage_of(view, "consensus").status == "succeeded"


def test_a_debate_over_its_budget_pauses_and_spends_no_more(project: ApiProject) -> None:
    view = project.run("consensus_building", "--budget", "0.02", task=QUESTION)
    assert view.status == "paused", (view.status, view.spent_usd)
    assert view.spent_usd <= 0.02


@pytest.mark.parametrize(
    ("task", "template"),
    [("login accepts an empty password", "bugfix"), ("add CSV export", "feature_development")],
)
def test_template_auto_by_the_model_and_by_the_rules(
    project: ApiProject, task: str, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(project.root)
    catalog = {"bugfix": "fix a bug", "feature_development": "build", "security_audit": "audit"}
    by_model = anyio.run(lambda: choose_template(settings, catalog, task))
    assert (by_model["template"], by_model["by"], by_model["model"]) == (template, "model", CHEAP)
    assert 0 < by_model["cost_usd"] <= 0.05
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    by_rules = anyio.run(lambda: choose_template(load_settings(project.root), catalog, task))
    assert (by_rules["template"], by_rules["by"]) == (template, "rules")


def test_template_auto_falls_back_when_the_model_names_no_template(
    project: ApiProject, debaters: DebateStandIn
) -> None:
    debaters.template_answers["login accepts an empty password"] = "rm_rf_everything"
    result = project("run", "auto", "--task", "login accepts an empty password", "--json")
    view = result.view()
    assert view.template == "bugfix"
    created = _events(project, view.run_id)[0]
    assert created["chosen"]["by"] == "rules"  # type: ignore[index]
    assert "rm_rf_everything" in created["chosen"]["fallback"]  # type: ignore[index]


def test_template_auto_spend_is_in_the_ledger_and_the_costs(project: ApiProject) -> None:
    view = project("run", "auto", "--task", "login accepts an empty password", "--json").view()
    chosen = _events(project, view.run_id)[0]["chosen"]
    assert chosen["by"] == "model" and chosen["cost_usd"] > 0  # type: ignore[index]
    rows = [r for r in project.ledger(view.run_id) if r.stage == "template=auto"]
    assert [(r.category, r.model, r.attempt) for r in rows] == [("orchestration", CHEAP, 0)]
    assert rows[0].cost_usd == pytest.approx(chosen["cost_usd"], abs=1e-12)  # type: ignore[index]
    costs = project("costs", "--by", "category", "--json").json()
    by_category = {g["key"]: g["cost_usd"] for g in costs["groups"]}
    assert by_category["orchestration"] >= rows[0].cost_usd
