"""The forecast on synthetic histories: documented priors without history (tokens per role x the
price table), history when there is some, expected stages and reworks counted, the run's
percentiles taken over simulated runs."""

from __future__ import annotations

import math

import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.forecasts import RunForecast
from stageflow.learning import priors
from stageflow.learning.book import ProfileBook
from stageflow.learning.config import LearningConfig
from stageflow.learning.forecast import forecast
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import ModelRoutes
from stageflow.workflows.spec import WorkflowSpec
from tests.learning.synthetic import NOW, book, many

ROUTES, PRICES = ModelRoutes(), PriceTable()
SONNET, HAIKU = ROUTES.resolve("sonnet"), ROUTES.resolve("haiku")
AGENTS = {
    "developer": AgentDefinition(
        name="developer", description="d", model="sonnet", system_prompt="x"
    ),
    "architect": AgentDefinition(
        name="architect", description="a", model="opus", system_prompt="x"
    ),
    "writer": AgentDefinition(name="writer", description="docs", model="auto", system_prompt="x"),
}


def spec(*stages: dict[str, object], name: str = "t") -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": name, "stages": list(stages)})


def run(
    s: WorkflowSpec, history: ProfileBook | None = None, task: str = "Add CSV export"
) -> RunForecast:
    return forecast(
        history or ProfileBook(),
        s,
        task,
        AGENTS,
        config=LearningConfig(),
        routes=ROUTES,
        prices=PRICES,
        now=NOW,
    )


def test_without_history_a_stage_costs_the_prior_tokens_at_the_models_price() -> None:
    fc = run(spec({"id": "impl", "agent": "developer"}))
    [st] = fc.stages
    median = priors.prior_cost("feature", SONNET, PRICES)
    assert median is not None
    t = priors.TOKENS["feature"]
    by_hand = (t.input * 3.0 + t.output * 15.0 + t.cache_write * 3.75 + t.cache_read * 0.3) / 1e6
    assert median == pytest.approx(by_hand)
    assert (st.basis, st.model, st.task_type, st.samples) == ("prior", "sonnet", "feature", 0)
    assert st.p50_usd == pytest.approx(median, rel=0.08)
    assert st.p90_usd == pytest.approx(priors.P90_FACTOR * median, rel=0.12)
    assert fc.p50_usd == pytest.approx(st.p50_usd)  # one stage: the run is the stage
    assert (fc.expected_stages, fc.expected_reworks) == (1.0, 0.0)


def test_expected_stages_count_conditions_and_leave_rollbacks_and_commands_free() -> None:
    fc = run(
        spec(
            {"id": "a", "agent": "developer", "on_failure": {"rollback": "undo"}},
            {"id": "b", "agent": "developer", "depends_on": ["a"], "when": "inputs.x == true"},
            {"id": "c", "agent": "developer", "depends_on": ["a"], "gate": "a.outputs.ok == true"},
            {"id": "check", "run": "pytest", "depends_on": ["a"]},
            {"id": "undo", "agent": "developer"},
        )
    )
    runs = {s.stage: s.runs for s in fc.stages}
    assert runs == {
        "a": 1.0,
        "b": priors.WHEN_RUNS,
        "c": priors.GATE_RUNS,
        "check": 1.0,
        "undo": 0.0,
    }
    assert fc.expected_stages == pytest.approx(1 + 0.5 + 0.9 + 1)
    check = next(s for s in fc.stages if s.stage == "check")
    assert (check.basis, check.p50_usd, check.p90_usd) == ("none", 0.0, 0.0)


def test_reworks_and_retries_are_expected_attempts() -> None:
    fc = run(
        spec(
            {"id": "design", "agent": "architect", "approval": "required", "max_rework": 3},
            {
                "id": "impl",
                "agent": "developer",
                "depends_on": ["design"],
                "on_failure": {"retry": {"max_attempts": 3, "backoff": 0}},
            },
        )
    )
    design, impl = fc.stages
    # a rework needs a delivered attempt (0.85) sent back (0.25), at most three times
    want = sum((priors.SUCCESS * priors.REWORK) ** k for k in (1, 2, 3))
    assert design.reworks == pytest.approx(want, abs=0.04)
    assert fc.expected_reworks == pytest.approx(want, abs=0.04)
    # retries: 1 + 0.15 + 0.15^2 attempts (at most three)
    fail = 1 - priors.SUCCESS
    assert impl.attempts == pytest.approx(1 + fail + fail**2, abs=0.03)
    assert impl.reworks == 0.0


def test_history_of_the_stage_is_used_once_there_is_enough() -> None:
    s = spec({"id": "impl", "agent": "developer"}, name="tpl")
    two = book(many(2, template="tpl", stage="impl", model=SONNET, cost=0.2))
    assert run(s, two).stages[0].basis == "prior"  # two attempts are not enough
    five = book(many(5, template="tpl", stage="impl", model=SONNET, cost=0.2))
    fc = run(s, five)
    [st] = fc.stages
    assert (st.basis, st.samples, st.p50_usd, st.p90_usd) == ("history", 5, 0.2, 0.2)
    assert fc.p50_usd == fc.p90_usd == 0.2
    assert fc.note == "1 stage(s) from history"


def test_the_agents_profile_elsewhere_stands_in_for_a_new_stage() -> None:
    s = spec({"id": "new_stage", "agent": "developer"}, name="tpl")
    other = book(many(4, template="other", stage="x", model=SONNET, cost=0.3, task_type="feature"))
    [st] = run(s, other).stages
    assert (st.basis, st.p50_usd) == ("profile", 0.3)


def test_the_run_percentiles_come_from_whole_simulated_runs() -> None:
    # two independent stages with spread: the run's p90 is below the sum of stage p90s
    fc = run(spec({"id": "a", "agent": "developer"}, {"id": "b", "agent": "developer"}))
    a, b = fc.stages
    assert fc.p90_usd < a.p90_usd + b.p90_usd
    assert fc.p50_usd > max(a.p50_usd, b.p50_usd)
    assert math.isclose(fc.mean_usd, fc.mean_usd)  # a number


def test_model_auto_forecasts_what_auto_would_run() -> None:
    s = spec({"id": "docs", "agent": "writer", "model": "auto"}, name="tpl")
    history = book(many(10, agent="writer", task_type="docs", model=HAIKU, cost=0.01, ok=True))
    [st] = run(s, history).stages
    assert (st.model, st.basis, st.p50_usd) == ("haiku", "profile", 0.01)
    [fresh] = run(s).stages
    assert fresh.model == "sonnet"  # no history: the config default (the agent says auto too)


def test_the_same_question_gets_the_same_answer() -> None:
    s = spec({"id": "a", "agent": "developer"}, {"id": "b", "agent": "architect"})
    assert run(s) == run(s)
    assert run(s, task="Add CSV export") != run(s, task="Fix the crash")  # another seed, type
