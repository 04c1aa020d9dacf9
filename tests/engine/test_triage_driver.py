"""Failure triage through the driver on a real SQLite file, with the production orchestrator
(``EngineQuestions``) over a scripted model client: its request goes through the run's caps
(``spend.reserve``), so with the budget used up the rules answer and nothing is sent; a model
that answers is logged once, and a new process reads the answer back instead of asking."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.asking import Answer, Ask
from stageflow.engine.runner import AttemptMeter, AttemptRequest, AttemptResult
from stageflow.subagents.orchestrator.engine_questions import EngineQuestions
from tests.engine.harness import FakeRunner, cost, default_result, engine_env
from tests.subagents.fake_model import FakeModel, tool_reply, tool_use, usage

pytestmark = pytest.mark.anyio

TEMPLATE = """
name: tb
stages:
  - id: build
    agent: worker
    on_failure: {retry: {max_attempts: 3, backoff: 0s}}
"""


def _failing_once(spend: float) -> FakeRunner:
    seen: list[int] = []

    async def build(req: AttemptRequest) -> AttemptResult:
        seen.append(req.attempt)
        if len(seen) == 1:
            return AttemptResult(
                status="failed", summary="boom", error="boom", usage=cost(spend), runner="fake"
            )
        return default_result(req)

    return FakeRunner({"build": build})


def _model(verdict: str) -> FakeModel:
    answer = tool_use("answer", {"verdict": verdict, "reason": "scripted"})
    return FakeModel(lambda call: tool_reply(answer, model=call.model, raw_usage=usage()))


async def _events(env: object, run_id: str) -> list[ev.Event]:
    store = env.store  # type: ignore[attr-defined]
    return [e.event for e in await store.load_events(run_id)]


async def test_with_the_budget_used_up_the_triage_is_the_rules_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, TEMPLATE, runner=_failing_once(1.0)) as env:
        model = _model("human")
        env.scheduler.orchestration = EngineQuestions(env.settings, client=lambda: model)
        state = await env.service.start_run("tb", "build it", budget_usd=1.0)
        with anyio.fail_after(20):
            final = await env.scheduler.drive(state.run_id)
        events = await _events(env, state.run_id)
        (triage,) = [e for e in events if isinstance(e, ev.OrchestrationDecided)]
        assert (triage.answer, triage.decided_by) == ("transient", "rules")
        assert "over budget" in (triage.fallback or "")
        assert model.calls == [] and triage.cost_usd == 0
        assert final.status == "paused" and final.budget_paused  # the retry waits for money
        assert final.spent_usd <= 1.0
        rows = await env.store.ledger.list(state.run_id)
        assert not [r for r in rows if r.category == "orchestration"]


async def test_an_answer_is_asked_once_and_read_back_by_the_next_process(tmp_path: Path) -> None:
    async with engine_env(tmp_path, TEMPLATE, runner=_failing_once(0.01)) as env:
        model = _model("human")
        env.scheduler.orchestration = EngineQuestions(env.settings, client=lambda: model)
        state = await env.service.start_run("tb", "build it", budget_usd=5.0)
        with anyio.fail_after(20):
            waiting = await env.scheduler.drive(state.run_id)
        assert waiting.status == "waiting" and len(model.calls) == 1
        assert waiting.stages["build"].status == "blocked"
        rows = [r for r in await env.store.ledger.list(state.run_id) if r.category != "agent"]
        assert [(r.category, r.stage, r.attempt) for r in rows] == [("orchestration", "build", 1)]
        assert waiting.orchestration > 0 and waiting.spent_usd >= 0.01 + waiting.orchestration
        # a new process (a new scheduler, a fold of the log) asks nothing
        again = _model("transient")
        env.scheduler.orchestration = EngineQuestions(env.settings, client=lambda: again)
        with anyio.fail_after(20):
            still = await env.scheduler.drive(state.run_id)
        assert still.stages["build"].status == "blocked" and again.calls == []
        await env.service.decide(
            state.run_id, stage="build", decision="approve", attempt=1, via="cli"
        )
        with anyio.fail_after(20):
            done = await env.scheduler.drive(state.run_id, until="terminal")
        assert done.status == "completed" and again.calls == []
        assert [c.attempt for c in env.runner.calls] == [1, 2]


class SlowTriage:
    """An ``Orchestration`` that takes its time and says transient."""

    kinds = frozenset({"failure"})

    def __init__(self) -> None:
        self.asked: list[Ask] = []

    async def answer(self, ask: Ask, meter: AttemptMeter) -> Answer:
        self.asked.append(ask)
        await anyio.sleep(0.3)
        return Answer("transient", "slow but sure", "model", "fake")


PARALLEL = """
name: tp
stages:
  - {id: design, agent: worker, approval: required}
  - id: build
    agent: worker
    on_failure: {retry: {max_attempts: 2, backoff: 0s}}
"""


async def test_a_run_waiting_for_a_person_is_not_idle_while_a_question_is_asked(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, PARALLEL, runner=_failing_once(0.0)) as env:
        triage = SlowTriage()
        env.scheduler.orchestration = triage
        state = await env.service.start_run("tp", "build it")
        with anyio.fail_after(20):
            idle = await env.scheduler.drive(state.run_id)
        # it returned once only the person's approval was left: the answer was logged first
        assert len(triage.asked) == 1
        assert idle.stages["design"].status == "awaiting_approval"
        assert idle.stages["build"].status == "succeeded"
        assert [a.key for a in triage.asked] == list(idle.answers)
