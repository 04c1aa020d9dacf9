"""Adversarial review of issue 4 (engine: the meter, budgets and model errors): each test shows
a defect and fails until it is fixed. The comment above each test says what goes wrong today
and what should happen instead."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import BudgetExceeded, ModelError
from stageflow.subagents.claude_code.runner import ClaudeCodeRunner
from stageflow.usage import RequestUsage
from tests.engine.harness import FakeRunner, default_result, engine_env

pytestmark = pytest.mark.anyio


def spend(cost: float) -> RequestUsage:
    return RequestUsage(
        model="claude-x-20260101",
        model_requested="claude-x",
        input_tokens=1000,
        output_tokens=100,
        cost_usd=cost,
    )


STAGE_CAP = """
name: stagecap
stages:
  - {id: a, agent: worker, budget_usd: 0.5}
"""


# DEFECT (budgets): the issue says a budget stop pauses the run "waiting for
# workflow_control(resume) with a raised budget". That works for the run cap, but a stop at a
# *stage* cap (the stage's or the agent's budget_usd) can never be resumed: RunResumed only
# raises the run budget, the stage cap stays what the template says, and the stage's spend so
# far already fills it. The resumed stage starts with remaining_usd() == 0, fails with
# budget_exceeded before sending anything, and the run pauses again, forever (only cancel
# ends it). Expected: resuming with a raised budget lets the stopped stage continue (e.g. the
# resume's budget also lifts the cap of the stage that stopped, or stage caps count per attempt).
async def test_a_stage_cap_stop_can_be_resumed_with_a_raised_budget(tmp_path: Path) -> None:
    first_left: list[float | None] = []

    async def greedy(req: AttemptRequest) -> AttemptResult:
        first_left.append(req.meter.remaining_usd())
        while True:
            left = req.meter.remaining_usd()
            if left is not None and left <= 0:
                raise BudgetExceeded("stage cap reached", spent_usd=0.5, budget_usd=0.5)
            if req.attempt > 1:
                return default_result(req)
            await req.meter.record(spend(0.25))

    async with engine_env(tmp_path, STAGE_CAP, runner=FakeRunner({"a": greedy})) as env:
        run = (await env.service.start_run("stagecap", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.status == "paused" and state.budget_paused
        assert state.spent_usd == 0.5

        await env.service.control(run, "resume", budget_usd=5.0, via="cli")
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert first_left[1] is not None and first_left[1] > 0, (
            f"the resumed stage got ${first_left[1]} to spend"
        )
        assert state.status == "completed"


ONE = """
name: one
stages:
  - {id: a, agent: worker}
"""


# DEFECT (errors): the issue says "a connection failure marks the attempt retryable and the run
# continues when the API is back". The runner does raise ModelError(kind="connection",
# retryable=True), but the driver only records the flag: under the default on_failure (fail)
# the stage fails for good and the run ends `failed` at the first network blip, so nothing can
# continue when the API is back. Expected: a retryable provider failure does not end the run
# (it is retried, or the run waits/pauses until the API answers again).
async def test_a_connection_failure_does_not_fail_the_run_under_the_default_policy(
    tmp_path: Path,
) -> None:
    calls = 0

    async def api_down_once(req: AttemptRequest) -> AttemptResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ModelError("cannot reach the Anthropic API", retryable=True, kind="connection")
        return default_result(req)

    async with engine_env(tmp_path, ONE, runner=FakeRunner({"a": api_down_once})) as env:
        run = (await env.service.start_run("one", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.ended != "failed", state.end_reason


PARALLEL = """
name: parallel
limits: {budget_usd: 1.0}
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker}
"""

# A stand-in for `claude -p`: waits until both stages' processes have started (a file barrier,
# bounded), then reports that it spent exactly the --max-budget-usd it was given.
FAKE_CLAUDE = """#!{python}
import json, os, sys, time
argv = sys.argv[1:]
budget = float(argv[argv.index("--max-budget-usd") + 1])
barrier = os.environ["BARRIER"]
open(os.path.join(barrier, str(os.getpid())), "w").close()
deadline = time.monotonic() + 10
while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
usage = {{"inputTokens": 1000, "outputTokens": 100, "cacheReadInputTokens": 0,
          "cacheCreationInputTokens": 0, "costUSD": budget}}
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                  "result": "done", "num_turns": 1, "total_cost_usd": budget,
                  "session_id": "s", "modelUsage": {{"claude-sonnet-4-6": usage}}}}))
"""


# DEFECT (budgets, claude-code runner): each attempt gets --max-budget-usd = what the caps
# allow *now*, which counts only spend already recorded. Two stages that start together both
# get the whole remaining run budget ($1.00 each), and Claude Code only reports its spend when
# it exits, so the run can spend N x its cap with N parallel stages (here $2.00 of $1.00). The
# API runner checks before every request and overshoots by at most one request per stage.
# Expected: concurrent claude-code attempts share what is left (reserve or split the remaining
# budget), so the run's spend stays within its cap.
async def test_parallel_claude_code_stages_cannot_spend_more_than_the_run_budget(
    tmp_path: Path,
) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = tmp_path / "fake-claude"
    script.write_text(FAKE_CLAUDE.format(python=sys.executable))
    script.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", os.defpath), "BARRIER": str(barrier)}
    claude = ClaudeCodeRunner(executable=str(script), env=env, timeout=30)
    runner = FakeRunner({"a": claude.run, "b": claude.run})
    async with engine_env(tmp_path, PARALLEL, runner=runner) as e:
        run = (await e.service.start_run("parallel", "x")).run_id
        with anyio.fail_after(30):
            state = await e.scheduler.drive(run)
        assert len(list(barrier.iterdir())) == 2  # both stages ran at the same time
        assert state.spent_usd <= 1.0 + 1e-9, f"spent ${state.spent_usd} of a $1.00 budget"


GROUP = """
name: group
limits: {budget_usd: 1.0}
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker}
  - {id: d, agent: worker}
  - {id: e, agent: worker, depends_on: [a]}
"""


# DEFECT (budgets, false stop): the run cap counts `spent_usd` (finished attempts) plus the
# live spend of every meter in RunDriver._meters. A meter is removed only when its attempt's
# task gets past _record, but with group commit another task may already have committed that
# attempt's attempt_finished (and started the stages it unblocks). Here a and b finish while
# d's commit is in flight; one commit takes both results and starts e, while b's task is still
# waiting for the lock with its meter live: e's first remaining_usd() counts b's $0.30 twice
# (0.1 instead of 0.4), and with a larger request it would stop with budget_exceeded and pause
# a run that has spent 60% of its budget. Expected: remaining = $1.00 - $0.60 = $0.40.
async def test_a_result_committed_by_group_commit_is_not_counted_twice_against_the_cap(
    tmp_path: Path,
) -> None:
    d_appending, d_release = anyio.Event(), anyio.Event()
    go = {"a": anyio.Event(), "b": anyio.Event()}
    returned = {"a": anyio.Event(), "b": anyio.Event()}
    e_left: list[float | None] = []

    async def spend_then_wait(req: AttemptRequest) -> AttemptResult:
        await req.meter.record(spend(0.3))
        await go[req.stage.id].wait()
        # no checkpoint from here until the driver queues the result and waits for the lock
        returned[req.stage.id].set()
        return default_result(req)

    async def look(req: AttemptRequest) -> AttemptResult:
        e_left.append(req.meter.remaining_usd())
        return default_result(req)

    runner = FakeRunner({"a": spend_then_wait, "b": spend_then_wait, "e": look})
    async with engine_env(tmp_path, GROUP, runner=runner) as env:
        real_append = env.store.append

        async def append(run_id: str, events: Any, **kw: Any) -> Any:
            finished = [e for e in events if getattr(e, "type", "") == "attempt_finished"]
            if any(e.stage == "d" for e in finished) and not d_release.is_set():
                d_appending.set()
                await d_release.wait()  # d's commit is in flight while a and b finish
            return await real_append(run_id, events, **kw)

        env.store.append = append  # type: ignore[method-assign]
        run = (await env.service.start_run("group", "x")).run_id

        async def coordinate() -> None:
            await d_appending.wait()
            for stage in ("a", "b"):
                go[stage].set()
                await returned[stage].wait()  # its result is queued behind d's commit
            d_release.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(coordinate)
                state = await env.scheduler.drive(run, until="terminal")
        assert state.status == "completed"
        assert e_left == [pytest.approx(0.4)], f"e saw ${e_left} left of $0.40"
