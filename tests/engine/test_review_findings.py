"""Review findings: each test shows a durability or concurrency defect of the engine."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.driver import RunDriver
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.store.store import Store
from tests.engine.harness import FakeRunner, cost, default_result, engine_env, wait_until
from tests.engine.pure import Log

pytestmark = pytest.mark.anyio


# -- 1. drive(until="idle") never returns: paused with a stage in retry_wait --------------------

RETRY_OVER_BUDGET = """
name: retryspend
limits: {budget_usd: 1.0}
stages:
  - {id: a, agent: worker, on_failure: {retry: {max_attempts: 3, backoff: 0}}}
"""


async def test_idle_drive_returns_when_budget_pause_hits_a_stage_in_retry_wait(
    tmp_path: Path,
) -> None:
    async def expensive_failure(req: AttemptRequest) -> AttemptResult:
        return AttemptResult(status="failed", error="flaky", usage=cost(2.0))

    runner = FakeRunner({"a": expensive_failure})
    async with engine_env(tmp_path, RETRY_OVER_BUDGET, runner=runner) as env:
        run = (await env.service.start_run("retryspend", "x")).run_id
        with anyio.fail_after(3):  # hangs today: _idle() treats retry_wait as a live timer
            state = await env.scheduler.drive(run, until="idle")
        assert state.status == "paused" and state.budget_paused
        assert state.stages["a"].status == "retry_wait"
        assert len(runner.calls) == 1


# -- 2. a stage-named retry leaves the run stuck forever ----------------------------------------

PAIR = {
    "name": "t",
    "stages": [
        {"id": "a", "agent": "developer"},
        {"id": "b", "agent": "developer"},
        {"id": "c", "agent": "developer", "depends_on": ["a", "b"]},
    ],
}


def test_retrying_one_of_two_failed_stages_still_lets_the_run_end() -> None:
    log = Log(PAIR)
    log.step()  # starts a and b
    log.finish("a", "failed", error="boom")
    log.finish("b", "failed", error="boom")
    log.step()  # StageFailed(a), StageFailed(b)
    log.step()  # RunFailed
    assert log.state.ended == "failed"
    log.add(ev.StageRetryRequested(stage="a", by="human"))
    log.step()  # a restarts
    log.finish("a", "passed")
    for _ in range(10):
        if log.state.ended is not None:
            break
        plan = log.step()
        if plan.empty and plan.wake_at is None:
            break  # nothing will ever happen again
    # b failed for good and c can never run: the run must end, not sit at "running" forever
    assert log.state.stages["b"].status == "failed"
    assert log.state.ended is not None, (
        f"run stuck at {log.state.status!r} with c {log.state.stages['c'].status!r} "
        "and an empty plan"
    )


PAIR_YAML = """
name: pair
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker}
  - {id: c, agent: worker, depends_on: [a, b]}
"""


async def test_retry_of_one_failed_stage_through_the_service_does_not_hang_the_driver(
    tmp_path: Path,
) -> None:
    both = anyio.Event()
    started: set[str] = set()

    async def fail_together(req: AttemptRequest) -> AttemptResult:
        if req.attempt > 1:
            return default_result(req)
        started.add(req.stage.id)
        if started == {"a", "b"}:
            both.set()
        with anyio.fail_after(5):
            await both.wait()
        return AttemptResult(status="failed", error=f"{req.stage.id} broke")

    runner = FakeRunner({"a": fail_together, "b": fail_together})
    async with engine_env(tmp_path, PAIR_YAML, runner=runner) as env:
        run = (await env.service.start_run("pair", "x")).run_id
        with anyio.fail_after(5):
            state = await env.scheduler.drive(run, until="terminal")
        assert state.status == "failed"
        assert state.stages["b"].status == "failed" and not state.stages["b"].tolerated
        await env.service.control(run, "retry", stage="a")
        with anyio.fail_after(3):  # hangs today: c waits forever on b, nothing ends the run
            state = await env.scheduler.drive(run, until="idle")
        assert state.ended is not None


# -- 3. a command made through the driver's own Store never reaches the waiting driver ----------

GATED = """
name: gated
stages:
  - {id: design, agent: worker, approval: required}
  - {id: build, agent: worker, depends_on: [design]}
"""


async def test_approval_through_the_same_store_reaches_a_driver_waiting_for_it(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run = (await env.service.start_run("gated", "x")).run_id
        done = anyio.Event()
        result: dict[str, str] = {}

        async def drive() -> None:
            result["status"] = (await env.scheduler.drive(run, until="terminal")).status
            done.set()

        async def waiting() -> bool:
            return (await env.service.state(run)).stages["design"].status == "awaiting_approval"

        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            await wait_until(waiting, limit=3)
            # one Store per process (store.py): the MCP server's approve tool and its serve()
            # drivers share it, and PRAGMA data_version never changes for this connection's
            # own writes, so the waiting driver never refreshes
            await env.service.decide(run, stage="design", decision="approve")
            with anyio.move_on_after(3):
                await done.wait()
            tg.cancel_scope.cancel()
        assert result.get("status") == "completed", "the driver never saw the approval"


# -- 4. shutdown through serve(stop) leaves attempts started but never finished -----------------

HANG = """
name: hang
stages:
  - {id: a, agent: worker}
"""


async def test_serve_stop_records_the_attempt_in_flight_as_interrupted(tmp_path: Path) -> None:
    async def hang(req: AttemptRequest) -> AttemptResult:
        await anyio.sleep_forever()
        raise AssertionError

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": hang})) as env:
        run = (await env.service.start_run("hang", "x")).run_id
        stop = anyio.Event()

        async def running() -> bool:
            return (await env.service.state(run)).stages["a"].status == "running"

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(env.scheduler.serve, stop)
                await wait_until(running, limit=3)
                stop.set()
        envs = await env.store.load_events(run)
        finished = [e.event for e in envs if isinstance(e.event, ev.AttemptFinished)]
        # driver.drive documents: when stop is set, attempts in flight are recorded as
        # interrupted; serve() cancels its drivers before they can look at stop
        assert [(f.stage, f.outcome) for f in finished] == [("a", "interrupted")]
        assert (await env.store.get_run(run)).owner is None


async def test_cancelling_drive_records_the_attempt_in_flight_as_interrupted(
    tmp_path: Path,
) -> None:
    async def hang(req: AttemptRequest) -> AttemptResult:
        await anyio.sleep_forever()
        raise AssertionError

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": hang})) as env:
        run = (await env.service.start_run("hang", "x")).run_id

        async def running() -> bool:
            return (await env.service.state(run)).stages["a"].status == "running"

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(run, until="terminal"))
                await wait_until(running, limit=3)
                tg.cancel_scope.cancel()  # Ctrl-C in the CLI, an MCP request cancelled, ...
        envs = await env.store.load_events(run)
        finished = [e.event for e in envs if isinstance(e.event, ev.AttemptFinished)]
        assert [(f.stage, f.outcome) for f in finished] == [("a", "interrupted")]


# -- 5. a driver that learns from an append that its lease is gone keeps running attempts -------

PARALLEL = """
name: par
stages:
  - {id: a, agent: worker}
  - {id: b, agent: worker}
"""


async def test_lease_lost_on_an_append_stops_the_other_attempts_at_once(tmp_path: Path) -> None:
    finish_a = anyio.Event()
    b_cancelled = anyio.Event()

    async def a_waits(req: AttemptRequest) -> AttemptResult:
        await finish_a.wait()
        return default_result(req)

    async def b_hangs(req: AttemptRequest) -> AttemptResult:
        try:
            await anyio.sleep_forever()
        finally:
            b_cancelled.set()
        raise AssertionError

    runner = FakeRunner({"a": a_waits, "b": b_hangs})
    # a long lease: the heartbeat (every 20 s) is not what stops b in this test
    async with engine_env(tmp_path, PARALLEL, runner=runner, lease_seconds=60) as env:
        run = (await env.service.start_run("par", "x")).run_id

        async def both_running() -> bool:
            st = await env.service.state(run)
            return st.stages["a"].status == st.stages["b"].status == "running"

        with anyio.fail_after(8):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(run, until="terminal"))
                await wait_until(both_running, limit=3)
                async with await Store.open(env.settings.db_path) as other:
                    # another process takes the run over (as after a missed heartbeat)
                    taken = await other.leases.acquire(
                        run, "otherhost:1:x", ttl=60, now=1e12, steal_from=env.scheduler.owner
                    )
                    assert taken
                finish_a.set()  # a's result append now fails with LeaseLost
                with anyio.fail_after(2):
                    # the driver now knows it lost the run, yet b (which the new owner will
                    # rerun) keeps going until the next heartbeat, 20 s later
                    await b_cancelled.wait()
                tg.cancel_scope.cancel()


# -- 6. drive(until="idle") returns while a runnable stage only waits for a global slot ---------

TWO_GATES = """
name: twogates
stages:
  - {id: a1, agent: worker, approval: required}
  - {id: a2, agent: worker, approval: required}
  - {id: d1, agent: worker, depends_on: [a1]}
"""

ONE = """
name: one
stages:
  - {id: x, agent: worker}
"""


async def test_idle_drive_waits_for_a_slot_instead_of_leaving_runnable_work_behind(
    tmp_path: Path,
) -> None:
    release = anyio.Event()

    async def hold(req: AttemptRequest) -> AttemptResult:
        with anyio.fail_after(5):
            await release.wait()
        return default_result(req)

    runner = FakeRunner({"x": hold})
    async with engine_env(tmp_path, TWO_GATES, runner=runner, max_agents=1) as env:
        from tests.engine.harness import write_template

        write_template(env.settings.project, ONE)
        gates = (await env.service.start_run("twogates", "x")).run_id
        other = (await env.service.start_run("one", "y")).run_id
        with anyio.fail_after(5):
            state = await env.scheduler.drive(gates, until="idle")
        assert {s: state.stages[s].status for s in ("a1", "a2")} == {
            "a1": "awaiting_approval",
            "a2": "awaiting_approval",
        }
        await env.service.decide(gates, stage="a1", decision="approve")

        async def x_running() -> bool:
            return (await env.service.state(other)).stages["x"].status == "running"

        async def release_once_refused() -> None:
            # the other run holds the only slot until the gates run's driver has been refused
            def refused() -> bool:
                waiting = env.scheduler.slots._refused
                return any(isinstance(w, RunDriver) and w.state.run_id == gates for w in waiting)

            with anyio.fail_after(5):
                while not refused():  # noqa: ASYNC110 - Slots offers no event to wait on
                    await anyio.sleep(0.005)
            release.set()

        with anyio.fail_after(8):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(other, until="terminal"))
                await wait_until(x_running, limit=3)
                tg.start_soon(release_once_refused)
                state = await env.scheduler.drive(gates, until="idle")
        # a2 still needs a human, but d1 did not: it only waited for the slot the other run held
        assert state.stages["d1"].status == "succeeded", state.stages["d1"].status


# -- 7. a runner's own TimeoutError on a stage without a timeout crashes the driver -------------


async def test_runner_timeout_error_without_stage_timeout_is_recorded_not_a_crash(
    tmp_path: Path,
) -> None:
    async def connect_timeout(req: AttemptRequest) -> AttemptResult:
        # e.g. socket.timeout / asyncio.TimeoutError from an HTTP client: both are TimeoutError
        raise TimeoutError("connect timed out")

    async with engine_env(tmp_path, HANG, runner=FakeRunner({"a": connect_timeout})) as env:
        run = (await env.service.start_run("hang", "x")).run_id
        with anyio.fail_after(5):
            state = await env.scheduler.drive(run, until="terminal")  # TypeError today
        assert state.status == "failed"
        assert state.stages["a"].attempts[0].outcome in ("failed", "timed_out")
