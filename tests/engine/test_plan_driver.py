"""The real scheduler and store on plans: items run under the for_each stage's budget cap and
timeout, the agents a plan or an escalation may use are snapshotted when the run starts, a plan
the runner hands back is checked again by the engine, and a plan stage with an approval is
expanded only once a human approves it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.runner import AttemptRequest, AttemptResult
from tests.engine.harness import FakeRunner, default_result, engine_env

pytestmark = pytest.mark.anyio

PLANNED = """\
name: planned
stages:
  - id: plan
    agent: worker
    plan: {{max_items: 3, agents: [worker]}}
    {approval}
  - id: work
    agent: worker
    for_each: plan
    depends_on: [plan]
    produces: [out]
    budget_usd: 0.5
    timeout: 0.2
    on_failure: {{retry: {{max_attempts: 2, backoff: 0}}}}
"""

ITEMS = {"items": [{"id": "a", "title": "A"}, {"id": "b", "title": "B", "depends_on": ["a"]}]}


def planner(plan: object) -> FakeRunner:
    async def plan_stage(req: AttemptRequest) -> AttemptResult:
        return default_result(req, plan=plan)

    return FakeRunner({"plan": plan_stage})


async def test_items_run_under_the_for_each_stages_cap_and_timeout(tmp_path: Path) -> None:
    seen: dict[str, float | None] = {}
    runner = planner(ITEMS)

    async def item_a(req: AttemptRequest) -> AttemptResult:
        seen[f"{req.stage.id}#{req.attempt}"] = req.meter.remaining_usd()
        if req.attempt == 1:
            await anyio.sleep(5)  # past the stage's timeout: timed out, then retried
        return default_result(req)

    runner.behaviours["work.a"] = item_a
    async with engine_env(tmp_path, PLANNED.format(approval=""), runner=runner) as env:
        run = await env.service.start_run("planned", "do it")
        with anyio.fail_after(20):
            final = await env.scheduler.drive(run.run_id, until="terminal")
        log = await env.store.load_events(run.run_id)
    assert final.status == "completed", final.end_reason
    assert seen == {"work.a#1": 0.5, "work.a#2": 0.5}  # the item's cap: the stage's budget_usd
    outcomes = [
        (e.event.attempt, e.event.outcome)
        for e in log
        if isinstance(e.event, ev.AttemptFinished) and e.event.stage == "work.a"
    ]
    assert outcomes == [(1, "timed_out"), (2, "passed")]
    assert final.stage_spec("work.b").depends_on == ["work.a"]


async def test_the_engine_checks_a_plan_the_runner_hands_back(tmp_path: Path) -> None:
    bad = {"items": [{"id": "a", "title": "A", "agent": "pentester"}]}
    async with engine_env(tmp_path, PLANNED.format(approval=""), runner=planner(bad)) as env:
        run = await env.service.start_run("planned", "do it")
        with anyio.fail_after(20):
            final = await env.scheduler.drive(run.run_id, until="terminal")
    plan = final.stages["plan"]
    assert final.status == "failed"
    assert plan.attempts[-1].error == (
        "plan refused: items[0] (a).agent 'pentester' is not allowed; allowed agents: worker"
    )
    assert "plan" not in plan.artifacts  # the runner's own "plan" text is never kept
    assert final.children == {}


async def test_a_plan_with_an_approval_expands_only_once_a_human_approves(
    tmp_path: Path,
) -> None:
    template = PLANNED.format(approval="approval: {required: true, prompt: check the plan}")
    async with engine_env(tmp_path, template, runner=planner(ITEMS)) as env:
        run = await env.service.start_run("planned", "do it")
        with anyio.fail_after(20):
            waiting = await env.scheduler.drive(run.run_id, until="idle")
        assert waiting.stages["plan"].status == "awaiting_approval"
        assert waiting.children == {} and "plan" in waiting.stages["plan"].artifacts
        await env.service.decide(run.run_id, stage="plan", decision="approve", approver="alice")
        with anyio.fail_after(20):
            final = await env.scheduler.drive(run.run_id, until="terminal")
    assert final.status == "completed"
    assert final.children == {"work": ("work.a", "work.b")}


async def test_agents_a_plan_or_an_escalation_may_use_are_snapshotted_at_start(
    tmp_path: Path,
) -> None:
    template = """\
    name: snap
    stages:
      - {id: plan, agent: worker, plan: {agents: [architect, tester]}}
      - {id: work, agent: worker, for_each: plan, depends_on: [plan]}
      - {id: ship, agent: worker, depends_on: [work], gate: "work.status == 'x'",
         escalate: decision-maker}
    """
    async with engine_env(tmp_path, template) as env:
        run = await env.service.start_run("snap", "do it")
    assert set(run.agents) == {"worker", "architect", "tester", "decision-maker"}
