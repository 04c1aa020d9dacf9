"""``[budget] confirm_above_usd``: a run whose p90 forecast is above it starts only after a human
confirms, through the approval path (``Service.decide``); nothing else passes the wait, a
missing or failing forecast asks too, and the forecast is stored with the run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.forecasts import CONFIRM_GATE, RunForecast
from stageflow.engine.planner import next_actions
from stageflow.engine.service import Service
from stageflow.engine.state import fold
from stageflow.engine.views import build_view
from stageflow.errors import InvalidArgument, InvalidState
from stageflow.workflows.spec import WorkflowSpec
from tests.engine.pure import Log
from tests.learning.harness import LearningEnv, learning_env

pytestmark = pytest.mark.anyio

TWO = """
name: two
limits: {timeout: 60s}
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker, depends_on: [a]}
"""
CONFIRM = "[budget]\nconfirm_above_usd = 1.0\n"


class Fixed:
    """An estimator with a given forecast (or one that fails)."""

    def __init__(self, p90: float | None) -> None:
        self.p90 = p90

    async def estimate(
        self,
        spec: WorkflowSpec,
        task: str,
        agents: Mapping[str, AgentDefinition],
        *,
        inputs: Mapping[str, Any] | None = None,
    ) -> RunForecast:
        if self.p90 is None:
            raise RuntimeError("no profiles today")
        return RunForecast(
            template=spec.name,
            p50_usd=self.p90 / 2,
            p90_usd=self.p90,
            mean_usd=self.p90 / 2,
            expected_stages=2,
            expected_reworks=0,
        )


def with_estimator(env: LearningEnv, estimator: object | None) -> Service:
    return Service(env.settings, env.store, runner_label="fake", estimator=estimator)  # type: ignore[arg-type]


async def attempts(env: LearningEnv, run_id: str) -> int:
    envs = await env.store.load_events(run_id)
    return sum(1 for e in envs if isinstance(e.event, ev.AttemptStarted))


async def test_a_run_above_the_threshold_waits_with_nothing_started_until_a_human_confirms(
    tmp_path: Path,
) -> None:
    async with learning_env(tmp_path, TWO, config=CONFIRM) as env:
        service = with_estimator(env, Fixed(3.0))
        state = await service.start_run("two", "Add CSV export")
        assert (state.confirmation, state.status, state.confirm_above_usd) == (
            "pending",
            "waiting",
            1.0,
        )
        state = await env.scheduler.drive(state.run_id, until="idle")
        assert await attempts(env, state.run_id) == 0
        view = await service.view(state.run_id)
        [wait] = view.waiting
        assert (wait.stage, wait.kind) == (CONFIRM_GATE, "confirm")
        assert "$1.50 (p50) to $3.00 (p90)" in wait.what and "$1.00" in wait.what
        assert view.next_action.startswith("confirm the cost forecast")
        assert view.forecast is not None and view.forecast.p90_usd == 3.0

        with pytest.raises(InvalidState, match="takes a person's decision"):  # the assistant
            await service.decide(state.run_id, stage=None, decision="approve", via="tool")
        await service.decide(
            state.run_id, stage=None, decision="approve", approver="ana", via="cli"
        )
        state = await env.scheduler.drive(state.run_id, until="idle")
        assert state.status == "completed"
        envs = await env.store.load_events(state.run_id)
    created = envs[0].event
    assert isinstance(created, ev.RunCreated)
    assert created.forecast is not None and created.forecast["p90_usd"] == 3.0
    assert created.confirm_above_usd == 1.0
    [decided] = [e for e in envs if isinstance(e.event, ev.ConfirmationDecided)]
    assert isinstance(decided.event, ev.ConfirmationDecided)
    assert (decided.event.decision, decided.event.approver) == ("approve", "ana")
    assert decided.event.via == "cli"
    starts = [e.seq for e in envs if isinstance(e.event, ev.AttemptStarted)]
    assert len(starts) == 2 and min(starts) > decided.seq  # nothing started before it


async def test_declining_the_forecast_cancels_the_run(tmp_path: Path) -> None:
    async with learning_env(tmp_path, TWO, config=CONFIRM) as env:
        service = with_estimator(env, Fixed(3.0))
        state = await service.start_run("two", "Add CSV export")
        with pytest.raises(InvalidArgument):
            await service.decide(state.run_id, stage=None, decision="reject")  # no reason
        state = await service.decide(
            state.run_id, stage=CONFIRM_GATE, decision="reject", feedback="too much"
        )
        assert (state.status, state.end_reason) == (
            "cancelled",
            "cost forecast declined by human: too much",
        )
        assert await attempts(env, state.run_id) == 0


async def test_nothing_but_a_decision_passes_the_confirmation(tmp_path: Path) -> None:
    async with learning_env(tmp_path, TWO, config=CONFIRM) as env:
        service = with_estimator(env, Fixed(3.0))
        rid = (await service.start_run("two", "Add CSV export")).run_id
        with pytest.raises(InvalidState, match="not paused"):
            await service.control(rid, "resume", budget_usd=100.0)
        with pytest.raises(InvalidState, match="no failed stage"):
            await service.control(rid, "retry")
        with pytest.raises(InvalidState, match="confirm its cost forecast"):
            await service.decide(rid, stage="a", decision="approve")
        # pausing and resuming leaves it waiting: a resume is not a confirmation
        await service.control(rid, "pause")
        state = await service.control(rid, "resume")
        assert state.confirmation == "pending"
        await env.scheduler.drive(rid, until="idle")
        assert await attempts(env, rid) == 0
        # a second decision after the first changes nothing
        await service.decide(rid, stage=CONFIRM_GATE, decision="approve", via="elicitation")
        with pytest.raises(InvalidState, match="no stage waiting"):
            await service.decide(rid, stage=None, decision="approve", via="cli")


@pytest.mark.parametrize("estimator", [None, Fixed(None)], ids=["no estimator", "failing"])
async def test_without_a_forecast_a_set_threshold_asks_anyway(
    tmp_path: Path, estimator: object | None
) -> None:
    async with learning_env(tmp_path, TWO, config=CONFIRM) as env:
        state = await with_estimator(env, estimator).start_run("two", "Add CSV export")
        assert state.confirmation == "pending" and state.forecast is None
        view = build_view(state)
        assert "no cost forecast could be made" in view.waiting[0].what


async def test_below_the_threshold_or_without_one_the_run_just_starts(tmp_path: Path) -> None:
    async with learning_env(tmp_path / "below", TWO, config=CONFIRM) as env:
        state = await with_estimator(env, Fixed(0.5)).start_run("two", "Add CSV export")
        assert state.confirmation is None and state.forecast is not None
    async with learning_env(tmp_path / "unset", TWO) as env:
        state = await with_estimator(env, Fixed(50.0)).start_run("two", "Add CSV export")
        assert state.confirmation is None


def test_the_run_timeout_counts_from_the_confirmation() -> None:
    spec = {"name": "t", "limits": {"timeout": 60}, "stages": [{"id": "a", "agent": "w"}]}
    log = Log(spec)
    created = log.envs[0].event
    assert isinstance(created, ev.RunCreated)
    waiting = created.model_copy(update={"confirm_above_usd": 1.0})
    log.envs[0] = ev.seal("r-test", 1, log.now, "test", waiting, ev.GENESIS_HASH)
    log.state = fold(log.envs)
    log.now += 3600  # an hour waiting for the human
    assert next_actions(log.state, log.now).empty
    log.add(ev.ConfirmationDecided(decision="approve"))
    plan = next_actions(log.state, log.now)
    assert [s.stage for s in plan.starts] == ["a"] and not plan.decisions  # not timed out
    assert not any(
        isinstance(d, ev.RunFailed) for d in next_actions(log.state, log.now + 30).decisions
    )
    assert any(isinstance(d, ev.RunFailed) for d in next_actions(log.state, log.now + 61).decisions)
