"""The scheduler over a real SQLite store with a scripted runner: durable, parallel, bounded."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import InvalidState
from tests.engine.harness import FakeRunner, cost, default_result, engine_env, wait_until

pytestmark = pytest.mark.anyio

CHAIN = """
name: chain
stages:
  - {id: design, agent: worker, produces: [design]}
  - {id: build, agent: worker, depends_on: [design], needs: [design.design], produces: [patch]}
  - {id: check, agent: worker, depends_on: [build], needs: [build.patch, design.design],
     produces: [report]}
"""


async def test_a_chain_runs_to_completion_with_artifacts_passed_downstream(tmp_path: Path) -> None:
    async with engine_env(tmp_path, CHAIN) as env:
        state = await env.service.start_run("chain", "build it")
        with anyio.fail_after(10):
            final = await env.scheduler.drive(state.run_id, until="terminal")
        assert final.status == "completed"
        assert [c.stage.id for c in env.runner.calls] == ["design", "build", "check"]
        check = env.runner.calls[2]
        assert [(a.stage, a.name, a.version) for a in check.artifacts] == [
            ("build", "patch", 1),
            ("design", "design", 1),
        ]
        assert check.artifacts[1].content.startswith("design/design attempt 1")
        art = await env.store.get_artifact(state.run_id, "check", "report")
        assert art.version == 1 and art.content.startswith("check/report")
        assert (await env.service.audit(state.run_id)).ok


async def test_attempt_started_is_committed_before_the_runner_is_called(tmp_path: Path) -> None:
    seen: list[str] = []

    async def probe(req: AttemptRequest) -> AttemptResult:
        events = await env.store.load_events(req.run_id)
        seen.append(events[-1].event.type)
        return default_result(req)

    async with engine_env(tmp_path, CHAIN, runner=FakeRunner({"build": probe})) as env:
        state = await env.service.start_run("chain", "x")
        with anyio.fail_after(10):
            await env.scheduler.drive(state.run_id, until="terminal")
    assert seen == ["attempt_started"]


PARALLEL = """
name: fan
limits: {max_concurrent_agents: 3}
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker}
  - {id: c, agent: worker}
  - {id: d, agent: worker}
  - {id: join, agent: worker, depends_on: [a, b, c, d]}
"""


async def test_independent_stages_overlap_and_respect_the_run_limit(tmp_path: Path) -> None:
    release = anyio.Event()
    started: list[str] = []

    async def hold(req: AttemptRequest) -> AttemptResult:
        started.append(req.stage.id)
        if len(started) == 3:
            release.set()
        with anyio.fail_after(5):
            await release.wait()  # only returns if three ran at the same time
        return default_result(req)

    runner = FakeRunner({x: hold for x in "abcd"})
    async with engine_env(tmp_path, PARALLEL, runner=runner) as env:
        state = await env.service.start_run("fan", "x")
        with anyio.fail_after(10):
            final = await env.scheduler.drive(state.run_id, until="terminal")
    assert final.status == "completed"
    assert runner.peak == 3  # limits.max_concurrent_agents
    assert runner.calls[-1].stage.id == "join"


async def test_global_limit_caps_attempts_across_runs(tmp_path: Path) -> None:
    async def slow(req: AttemptRequest) -> AttemptResult:
        await anyio.sleep(0.05)
        return default_result(req)

    runner = FakeRunner({x: slow for x in "abcd"})
    async with engine_env(tmp_path, PARALLEL, runner=runner, max_agents=2) as env:
        r1 = await env.service.start_run("fan", "one")
        r2 = await env.service.start_run("fan", "two")
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(r1.run_id, until="terminal"))
                tg.start_soon(lambda: env.scheduler.drive(r2.run_id, until="terminal"))
        assert runner.peak == 2
        assert env.scheduler.slots.peak == 2
        for r in (r1, r2):
            assert (await env.service.state(r.run_id)).status == "completed"


APPROVAL = """
name: gated
stages:
  - {id: design, agent: worker, produces: [design], approval: required, max_rework: 2}
  - {id: build, agent: worker, depends_on: [design], needs: [design.design], produces: [patch]}
"""


async def test_reject_reruns_with_feedback_and_previous_artifact_then_approve(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, APPROVAL) as env:
        run = (await env.service.start_run("gated", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.status == "waiting"
        assert state.stages["design"].status == "awaiting_approval"
        await env.service.decide(
            run,
            stage="design",
            decision="reject",
            feedback="cover the failure modes",
            approver="ann",
        )
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        rework = env.runner.calls[-1]
        assert (rework.kind, rework.feedback) == ("rework", "cover the failure modes")
        assert [(p.name, p.version) for p in rework.previous] == [("design", 1)]
        assert state.stages["design"].artifacts["design"].version == 2
        v1 = await env.store.get_artifact(run, "design", "design", 1)
        assert "feedback: None" in v1.content  # version 1 kept, not overwritten
        await env.service.decide(run, stage=None, decision="approve", approver="ann", attempt=2)
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.status == "completed"
        assert env.runner.calls[-1].artifacts[0].version == 2
        audit = await env.service.audit(run)
        approvals = [e.event for e in audit.events if e.event.type == "approval_decided"]
        assert [(a.decision, a.approver) for a in approvals] == [
            ("reject", "ann"),
            ("approve", "ann"),
        ]


async def test_approving_a_stage_that_is_not_waiting_names_its_state(tmp_path: Path) -> None:
    async with engine_env(tmp_path, APPROVAL) as env:
        run = (await env.service.start_run("gated", "x")).run_id
        with pytest.raises(InvalidState, match=r"stage 'build' is not waiting.*\(it is pending\)"):
            await env.service.decide(run, stage="build", decision="approve")
        before = await env.store.load_events(run)
        with pytest.raises(InvalidState, match="no stage waiting"):
            await env.service.decide(run, stage=None, decision="approve")
        assert await env.store.load_events(run) == before  # nothing written


TIMEOUT = """
name: slow
stages:
  - id: a
    agent: worker
    timeout: 0.2
    on_failure: {retry: {max_attempts: 2, backoff: 0}}
"""


async def test_stage_timeout_cancels_the_attempt_and_retry_succeeds(tmp_path: Path) -> None:
    async def first_hangs(req: AttemptRequest) -> AttemptResult:
        if req.attempt == 1:
            await anyio.sleep_forever()
        return default_result(req)

    async with engine_env(tmp_path, TIMEOUT, runner=FakeRunner({"a": first_hangs})) as env:
        run = (await env.service.start_run("slow", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
    assert state.status == "completed"
    outcomes = [a.outcome for a in state.stages["a"].attempts]
    assert outcomes == ["timed_out", "passed"]
    assert "timed out after 0.2s" in (state.stages["a"].attempts[0].error or "")


HANG = """
name: hang
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker, depends_on: [a]}
"""


async def test_cancel_from_another_connection_cancels_the_running_stage(tmp_path: Path) -> None:
    async def hang(req: AttemptRequest) -> AttemptResult:
        await anyio.sleep_forever()
        raise AssertionError

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": hang})) as env:
        run = (await env.service.start_run("hang", "x")).run_id
        from stageflow.engine.service import Service
        from stageflow.store.store import Store

        async def cancel_when_running() -> None:
            other = await Store.open(env.settings.db_path)  # as another process would
            try:
                svc = Service(env.settings, other)

                async def running() -> bool:
                    return (await svc.state(run)).stages["a"].status == "running"

                await wait_until(running)
                await svc.control(run, "cancel", reason="wrong ticket", actor="bob")
            finally:
                await other.close()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_running)
                state = await env.scheduler.drive(run, until="terminal")
    assert state.status == "cancelled"
    assert state.end_reason == "wrong ticket"
    assert state.stages["a"].status == "cancelled"
    assert state.stages["a"].attempts[0].outcome == "cancelled"
    assert state.stages["b"].attempts == ()


async def test_pause_lets_running_stage_finish_and_resume_continues(tmp_path: Path) -> None:
    gate = anyio.Event()

    async def wait_for_pause(req: AttemptRequest) -> AttemptResult:
        with anyio.fail_after(5):
            await gate.wait()
        return default_result(req)

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": wait_for_pause})) as env:
        run = (await env.service.start_run("hang", "x")).run_id

        async def pause_then_release() -> None:
            async def running() -> bool:
                return (await env.service.state(run)).stages["a"].status == "running"

            await wait_until(running)
            await env.service.control(run, "pause", reason="review first")
            gate.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pause_then_release)
                state = await env.scheduler.drive(run)
        assert state.status == "paused"
        assert state.stages["a"].status == "succeeded"
        assert state.stages["b"].status == "pending"
        await env.service.control(run, "resume")
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.status == "completed"


BUDGET = """
name: spend
limits: {budget_usd: 1.0}
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker, depends_on: [a]}
"""


async def test_run_budget_pauses_and_resume_with_higher_budget_finishes(tmp_path: Path) -> None:
    async def pricey(req: AttemptRequest) -> AttemptResult:
        return default_result(req, usage=cost(1.25))

    async with engine_env(tmp_path, BUDGET, runner=FakeRunner({"a": pricey})) as env:
        run = (await env.service.start_run("spend", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.status == "paused" and state.budget_paused
        assert state.spent_usd == 1.25
        row = await env.store.get_run(run)
        assert (row.status, row.spent_usd) == ("paused", 1.25)
        from stageflow.errors import InvalidArgument

        with pytest.raises(InvalidArgument, match="higher budget"):
            await env.service.control(run, "resume", via="cli")
        await env.service.control(run, "resume", budget_usd=3.0, via="cli")
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.status == "completed"
        assert state.budget_usd == 3.0
        assert env.runner.calls[-1].budget_remaining_usd == pytest.approx(1.75)


async def test_missing_required_artifact_fails_the_attempt(tmp_path: Path) -> None:
    async def lazy(req: AttemptRequest) -> AttemptResult:
        return AttemptResult(status="passed", summary="forgot", artifacts={})

    async with engine_env(tmp_path, CHAIN, runner=FakeRunner({"design": lazy})) as env:
        run = (await env.service.start_run("chain", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
    assert state.status == "failed"
    assert "without its required artifact(s): design" in (state.end_reason or "")


async def test_runner_exception_fails_the_stage_without_killing_the_scheduler(
    tmp_path: Path,
) -> None:
    async def broken(req: AttemptRequest) -> AttemptResult:
        raise RuntimeError("bug in runner")

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": broken})) as env:
        run = (await env.service.start_run("hang", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
    assert state.status == "failed"
    assert "RuntimeError: bug in runner" in (state.stages["a"].attempts[0].error or "")


async def test_retry_command_reruns_a_failed_stage_and_completes(tmp_path: Path) -> None:
    async def flaky(req: AttemptRequest) -> AttemptResult:
        if req.attempt == 1:
            return AttemptResult(status="failed", summary="flaky", error="network down")
        return default_result(req)

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": flaky})) as env:
        run = (await env.service.start_run("hang", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
        assert state.status == "failed"
        await env.service.control(run, "retry", stage="a")
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
        assert state.status == "completed"
        assert [a.kind for a in state.stages["a"].attempts] == ["initial", "retry"]


async def test_every_event_in_the_log_is_hash_chained(tmp_path: Path) -> None:
    async with engine_env(tmp_path, CHAIN) as env:
        run = (await env.service.start_run("chain", "x")).run_id
        with anyio.fail_after(10):
            await env.scheduler.drive(run, until="terminal")
        envs = await env.store.load_events(run)
        assert ev.verify_chain(envs) == []
        assert envs[-1].event.type == "run_completed"


RETRYING = """
name: retrying
stages:
  - {id: a, agent: worker, on_failure: {retry: {max_attempts: 3, backoff: 0}}}
"""


async def test_non_retryable_model_error_is_not_retried_but_retryable_one_is(
    tmp_path: Path,
) -> None:
    from stageflow.errors import ModelError

    async def denied(req: AttemptRequest) -> AttemptResult:
        raise ModelError("401 unauthorized: check ANTHROPIC_API_KEY", retryable=False)

    async with engine_env(tmp_path, RETRYING, runner=FakeRunner({"a": denied})) as env:
        run = (await env.service.start_run("retrying", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
    assert state.status == "failed"
    assert len(state.stages["a"].attempts) == 1

    async def overloaded_once(req: AttemptRequest) -> AttemptResult:
        if req.attempt == 1:
            raise ModelError("529 overloaded", retryable=True)
        return default_result(req)

    async with engine_env(
        tmp_path / "2", RETRYING, runner=FakeRunner({"a": overloaded_once})
    ) as env:
        run = (await env.service.start_run("retrying", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run, until="terminal")
    assert state.status == "completed"
    assert [a.outcome for a in state.stages["a"].attempts] == ["failed", "passed"]
