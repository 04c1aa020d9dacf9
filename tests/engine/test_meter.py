"""The attempt meter: every model request is counted, whatever becomes of its attempt."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import BudgetExceeded, ModelError
from stageflow.store.rows import RequestRow
from stageflow.usage import RequestUsage
from tests.engine.harness import FakeRunner, default_result, engine_env

pytestmark = pytest.mark.anyio

TWO = """
name: two
limits: {budget_usd: 1.0}
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker, depends_on: [a]}
"""


def req_usage(cost: float, **kw: object) -> RequestUsage:
    fields: dict[str, object] = {
        "model": "claude-x-20260101",
        "model_requested": "claude-x",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cache_write_5m_tokens": 10,
        "cache_write_1h_tokens": 20,
        "cache_read_tokens": 300,
        "cost_usd": cost,
        **kw,
    }
    return RequestUsage.model_validate(fields)


async def test_a_failed_attempt_keeps_the_spend_of_its_requests(tmp_path: Path) -> None:
    calls = 0

    async def spend_then_fail(req: AttemptRequest) -> AttemptResult:
        nonlocal calls
        calls += 1
        await req.meter.record(req_usage(0.125))
        await req.meter.record(req_usage(0.25))
        if calls == 1:
            raise ModelError("the model went away", retryable=True, kind="connection")
        return default_result(req).model_copy(update={"model": None})

    template = TWO.replace("{id: a, agent: worker}", "{id: a, agent: worker, on_failure: retry}")
    runner = FakeRunner({"a": spend_then_fail})
    async with engine_env(tmp_path, template, runner=runner) as env:
        run = (await env.service.start_run("two", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
        assert state.status == "completed"
        a = state.stages["a"]
        assert [x.outcome for x in a.attempts] == ["failed", "passed"]
        # both attempts' requests are in the stage total and the run's spend
        assert [x.usage.cost_usd for x in a.attempts] == [0.375, 0.375]
        assert a.usage.requests == 4 and a.usage.cache_write_tokens == 120
        assert state.spent_usd == 0.75
        # the answering model comes from the ledger when the runner does not say
        assert a.attempts[1].model_answered == "claude-x-20260101"
        assert a.attempts[1].model_resolved == "claude-x"
        ledger = await env.store.ledger.list(run)
        assert [(r.stage, r.attempt, r.seq) for r in ledger] == [
            ("a", 1, 1),
            ("a", 1, 2),
            ("a", 2, 1),
            ("a", 2, 2),
        ]


async def test_the_meter_counts_this_attempts_spend_against_the_run_cap(tmp_path: Path) -> None:
    seen: list[float | None] = []

    async def greedy(req: AttemptRequest) -> AttemptResult:
        while True:
            left = req.meter.remaining_usd()
            seen.append(left)
            if left is not None and left <= 0:
                raise BudgetExceeded("cap reached", spent_usd=1.0, budget_usd=1.0)
            await req.meter.record(req_usage(0.375))

    async with engine_env(tmp_path, TWO, runner=FakeRunner({"a": greedy})) as env:
        run = (await env.service.start_run("two", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert seen == [1.0, 0.625, 0.25, 0.0]
        assert state.status == "paused" and state.budget_paused
        assert state.stages["a"].attempts[-1].outcome == "budget_exceeded"
        assert state.spent_usd == 1.125  # the last request started under the cap


async def test_a_stage_cap_from_the_agent_applies_when_the_stage_sets_none(
    tmp_path: Path,
) -> None:
    seen: list[float | None] = []

    async def look(req: AttemptRequest) -> AttemptResult:
        seen.append(req.meter.remaining_usd())
        await req.meter.record(req_usage(0.25))
        seen.append(req.meter.remaining_usd())
        return default_result(req)

    template = TWO.replace("{id: b, agent: worker, depends_on: [a]}", "{id: b, agent: capped}")
    async with engine_env(tmp_path, template, runner=FakeRunner({"b": look})) as env:
        agents = env.settings.state_dir / "agents"
        (agents / "capped.md").write_text(
            "---\nname: capped\ndescription: d\nbudget_usd: 0.5\n---\nbody\n", encoding="utf-8"
        )
        run = (await env.service.start_run("two", "x")).run_id
        with anyio.fail_after(10):
            await env.scheduler.drive(run, until="terminal")
        assert seen == [0.5, 0.25]


async def test_a_killed_attempts_ledger_spend_is_counted_when_the_run_is_taken_over(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, TWO) as env:
        run = (await env.service.start_run("two", "x")).run_id
        # a process that died mid-attempt: it committed attempt_started and paid for two
        # requests, but never wrote attempt_finished
        head = (await env.store.get_run(run)).last_seq
        from stageflow.store.rows import RunSummary

        await env.store.append(
            run,
            [ev.AttemptStarted(stage="a", attempt=1, agent="worker", owner="dead")],
            expect_seq=head,
            actor="dead",
            at=1.0,
            summary=RunSummary(status="running", spent_usd=0.0, budget_usd=1.0),
        )
        for cost in (0.125, 0.0625):
            row = RequestRow(stage="a", attempt=1, **req_usage(cost).model_dump())
            await env.store.ledger.record(run, row, at=2.0)
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
        a = state.stages["a"]
        assert [x.outcome for x in a.attempts] == ["interrupted", "passed"]
        assert a.attempts[0].usage.cost_usd == 0.1875 and a.attempts[0].usage.requests == 2
        assert state.spent_usd == 0.1875
