"""Provider failures (network, overload) are retried whatever the policy, then pause the run."""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.planner import TRANSIENT_ATTEMPTS
from tests.engine.pure import Log, chain


def _api_down(log: Log, stage: str = "a") -> None:
    st = log.state.stages[stage]
    log.add(
        ev.AttemptFinished(
            stage=stage,
            attempt=st.attempt,
            outcome="failed",
            error="cannot reach the Anthropic API",
            retryable=True,
        )
    )


def test_a_provider_failure_is_retried_under_the_default_fail_policy() -> None:
    log = Log(chain("a", "b"))
    log.step()
    _api_down(log)
    plan = log.step()
    assert [type(d).__name__ for d in plan.decisions] == ["RetryScheduled"]
    assert log.status("a") == "retry_wait"
    log.now += 60
    log.step()
    assert log.status("a") == "running" and log.state.stages["a"].attempt == 2
    log.finish("a")
    log.step()
    assert log.status("b") == "running" and log.state.ended is None


def test_an_api_that_stays_down_pauses_the_run_and_resume_reruns_the_stage() -> None:
    log = Log(chain("a"))
    log.step()
    delays = []
    for _ in range(TRANSIENT_ATTEMPTS - 1):
        _api_down(log)
        plan = log.step()
        retry = plan.decisions[0]
        assert isinstance(retry, ev.RetryScheduled)
        delays.append(retry.not_before - log.now)
        log.now = retry.not_before
        log.step()
    _api_down(log)
    log.step()
    assert delays == [2.0, 4.0, 8.0]
    assert log.state.paused and log.state.ended is None  # paused, not failed: nothing lost
    assert "resume the run when it is reachable again" in (log.state.pause_reason or "")
    assert log.plan().starts == []  # nothing runs while paused

    log.add(ev.RunResumed())
    log.step()
    assert log.status("a") == "running"
    log.finish("a")
    log.step()
    assert log.state.ended == "completed"


def test_a_failure_the_runner_calls_final_is_not_retried() -> None:
    log = Log(chain("a"))
    log.step()
    log.add(ev.AttemptFinished(stage="a", attempt=1, outcome="failed", error="bad key", fatal=True))
    log.step()
    assert log.status("a") == "failed" and log.state.failing == "a"


def test_a_stage_that_fails_on_its_own_keeps_the_default_fail_policy() -> None:
    log = Log(chain("a"))
    log.step()
    log.finish("a", "failed", error="tests failed")
    log.step()
    assert log.status("a") == "failed"
