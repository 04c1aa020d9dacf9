"""The pure engine: fold + planner decisions, replayed from hand-built logs (no DB, no model)."""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.state import fold
from tests.engine.pure import Log, chain


def started(plan: object) -> list[str]:
    return [s.stage for s in plan.starts]  # type: ignore[attr-defined]


def test_stages_start_in_dependency_order_and_run_completes() -> None:
    log = Log(chain("a", "b", "c"))
    assert started(log.step()) == ["a"]
    assert log.plan().empty  # b waits for a
    log.finish("a")
    assert started(log.step()) == ["b"]
    log.finish("b")
    assert started(log.step()) == ["c"]
    log.finish("c")
    plan = log.step()
    assert plan.decisions == [ev.RunCompleted()]
    assert log.state.status == "completed"


def test_independent_stages_start_together_up_to_the_run_limit() -> None:
    spec = {
        "name": "t",
        "limits": {"max_concurrent_agents": 2},
        "stages": [{"id": x, "agent": "dev"} for x in ("a", "b", "c")],
    }
    log = Log(spec)
    assert started(log.step()) == ["a", "b"]
    assert log.plan().empty  # c waits for a free slot
    log.finish("b")
    assert started(log.step()) == ["c"]


def test_approval_waits_then_approve_succeeds() -> None:
    log = Log(chain("a", "b", a={"approval": "required"}))
    log.step()
    log.finish("a")
    assert log.status("a") == "awaiting_approval"
    assert log.state.status == "waiting"
    assert log.plan().empty  # b does not start before the approval
    log.add(ev.ApprovalDecided(stage="a", decision="approve", approver="ann"))
    assert log.status("a") == "succeeded"
    assert started(log.step()) == ["b"]


def test_reject_reruns_with_feedback_until_max_rework_then_fails() -> None:
    log = Log(chain("a", a={"approval": "required", "max_rework": 1}))
    log.step()
    log.finish("a", artifacts={"design": 1})
    log.add(ev.ApprovalDecided(stage="a", decision="reject", feedback="add risks"))
    plan = log.step()
    assert [(s.stage, s.kind, s.feedback) for s in plan.starts] == [("a", "rework", "add risks")]
    log.finish("a", artifacts={"design": 2})
    assert log.state.stages["a"].artifacts["design"].version == 2
    log.add(ev.ApprovalDecided(stage="a", decision="reject", feedback="still no"))
    assert log.status("a") == "failed"
    assert "max_rework 1" in (log.state.stages["a"].reason or "")
    assert log.step().decisions[0].type == "run_failed"


def test_when_false_skips_and_skips_work_depending_only_on_skipped() -> None:
    spec = {
        "name": "t",
        "inputs": {"deep": {"type": "boolean", "default": False}},
        "stages": [
            {"id": "a", "agent": "dev"},
            {"id": "b", "agent": "dev", "depends_on": ["a"], "when": "inputs.deep == true"},
            {"id": "c", "agent": "dev", "depends_on": ["b"]},
            {"id": "d", "agent": "dev", "depends_on": ["a", "b"]},
        ],
    }
    log = Log(spec, inputs={"deep": False})
    log.step()
    log.finish("a")
    log.step()
    assert log.status("b") == "skipped"
    log.step()
    assert log.status("c") == "skipped"  # only skipped upstream
    assert started(log.step()) == ["d"]  # a succeeded, so d runs


def test_gate_false_blocks_and_human_approval_runs_it() -> None:
    spec = chain("t", "r", r={"gate": "t.outputs.passed == true"})
    log = Log(spec)
    log.step()
    log.finish("t", outputs={"passed": False})
    log.step()
    assert log.status("r") == "blocked"
    assert log.state.status == "waiting"
    log.add(ev.GateDecided(stage="r", decision="approve", approver="bob"))
    assert started(log.step()) == ["r"]


def test_gate_true_runs_without_a_human() -> None:
    log = Log(chain("t", "r", r={"gate": "t.outputs.passed == true"}))
    log.step()
    log.finish("t", outputs={"passed": True})
    assert started(log.step()) == ["r"]


def test_retry_with_backoff_then_fail_after_max_attempts() -> None:
    log = Log(
        chain(
            "a",
            a={"on_failure": {"retry": {"max_attempts": 3, "backoff": "10s", "backoff_factor": 2}}},
        )
    )
    log.step()
    log.finish("a", "failed", error="boom")
    plan = log.step()
    assert plan.decisions[0].type == "retry_scheduled"
    assert log.state.stages["a"].not_before == log.now + 10
    assert log.plan().starts == [] and log.plan().wake_at == log.now + 10
    log.now += 10
    plan = log.step()
    assert [(s.kind, s.attempt) for s in plan.starts] == [("retry", 2)]
    log.finish("a", "timed_out")
    log.step()
    assert log.state.stages["a"].not_before == log.now + 20  # doubled
    log.now += 20
    log.step()
    log.finish("a", "failed")
    plan = log.step()
    assert plan.decisions[0] == ev.StageFailed(stage="a", reason="failed (after 3 attempts)")
    assert log.step().decisions[0].type == "run_failed"


def test_on_failure_continue_lets_dependents_run_and_run_complete() -> None:
    log = Log(chain("a", "b", a={"on_failure": "continue"}))
    log.step()
    log.finish("a", "failed", error="lint warnings")
    log.step()
    assert log.state.stages["a"].tolerated
    assert started(log.step()) == ["b"]
    log.finish("b")
    log.step()
    assert log.state.status == "completed"


def test_rollback_runs_the_rollback_stage_then_fails_the_run() -> None:
    spec = {
        "name": "t",
        "stages": [
            {"id": "fix", "agent": "dev", "on_failure": {"rollback": "undo"}},
            {"id": "undo", "agent": "dev"},
            {"id": "after", "agent": "dev", "depends_on": ["fix"]},
        ],
    }
    log = Log(spec)
    assert started(log.step()) == ["fix"]  # the rollback target is not scheduled normally
    log.finish("fix", "failed", error="tests broke")
    plan = log.step()
    assert [d.type for d in plan.decisions] == ["stage_failed", "rollback_started"]
    assert started(log.step()) == ["undo"]
    log.finish("undo")
    plan = log.step()
    assert plan.decisions[0].type == "run_failed"
    assert "rollback 'undo' succeeded" in log.state.end_reason  # type: ignore[operator]
    assert log.status("after") == "pending"


def test_failure_cancels_other_running_stages_first() -> None:
    spec = {"name": "t", "stages": [{"id": "a", "agent": "d"}, {"id": "b", "agent": "d"}]}
    log = Log(spec)
    log.step()
    log.finish("a", "failed")
    log.step()
    plan = log.step()
    assert plan.cancel == ["b"]
    log.finish("b", "cancelled")
    assert log.status("b") == "cancelled"
    assert log.step().decisions[0].type == "run_failed"


def test_cancel_run_cancels_running_and_records_reason() -> None:
    log = Log(chain("a", "b"))
    log.step()
    log.add(ev.RunCancelled(reason="wrong task", by="ann"))
    assert log.state.status == "cancelled"
    assert log.plan().cancel == ["a"]
    log.finish("a", "cancelled")
    assert log.status("a") == "cancelled"
    assert log.state.end_reason == "wrong task"


def test_pause_stops_new_starts_and_resume_continues() -> None:
    log = Log(chain("a", "b"))
    log.step()
    log.add(ev.RunPaused(reason="lunch"))
    log.finish("a")
    assert log.plan().starts == []
    assert log.state.status == "paused"
    log.add(ev.RunResumed())
    assert started(log.step()) == ["b"]


def test_stage_timeout_outcome_is_retryable_failure() -> None:
    log = Log(chain("a", a={"on_failure": "retry"}))
    log.step()
    log.finish("a", "timed_out", error="stage timed out after 5s")
    assert log.step().decisions[0].type == "retry_scheduled"


def test_approval_timeout_applies_on_timeout_action() -> None:
    log = Log(
        chain("a", a={"approval": {"required": True, "timeout": "1h", "on_timeout": "approve"}})
    )
    log.step()
    log.finish("a")
    assert log.plan().wake_at == log.now + 3600
    log.now += 3600
    plan = log.step()
    assert plan.decisions[0] == ev.ApprovalDecided(
        stage="a",
        decision="approve",
        approver="timeout",
        automatic=True,
        feedback="approval of 'a' timed out after 3600s",
        attempt=1,
        via="timeout",
    )
    assert log.status("a") == "succeeded"


def test_approval_timeout_fail_fails_the_stage() -> None:
    log = Log(chain("a", a={"approval": {"timeout": 60}}))
    log.step()
    log.finish("a")
    log.now += 61
    log.step()
    assert log.status("a") == "failed"


def test_run_budget_pauses_before_the_next_stage_and_raised_budget_resumes() -> None:
    log = Log(chain("a", "b"), budget=1.0)
    log.step()
    log.finish("a", cost=1.5)
    plan = log.step()
    assert plan.decisions[0].type == "run_paused" and log.state.budget_paused
    log.add(ev.RunResumed(budget_usd=5.0))
    assert started(log.step()) == ["b"]


def test_budget_exceeded_attempt_pauses_and_resume_reruns_the_stage() -> None:
    log = Log(chain("a"), budget=1.0)
    log.step()
    log.finish("a", "budget_exceeded", error="stage cap reached")
    log.step()
    assert log.state.status == "paused"
    log.add(ev.RunResumed(budget_usd=3.0))
    plan = log.step()
    assert [(s.stage, s.kind) for s in plan.starts] == [("a", "retry")]


def test_interrupted_attempt_is_rescheduled_as_resume_not_counted_as_failure() -> None:
    log = Log(chain("a", a={"on_failure": {"retry": {"max_attempts": 1}}}))
    log.step()
    log.finish("a", "interrupted")
    plan = log.step()
    assert [(s.kind, s.attempt) for s in plan.starts] == [("resume", 2)]
    assert log.state.stages["a"].failures == 0


def test_retry_request_reopens_a_failed_run() -> None:
    log = Log(chain("a", "b"))
    log.step()
    log.finish("a", "failed")
    log.step()
    log.step()
    assert log.state.status == "failed"
    log.add(ev.StageRetryRequested(stage="a"))
    assert log.state.status == "running"
    assert started(log.step()) == ["a"]


def test_run_timeout_fails_the_run() -> None:
    log = Log({"name": "t", "limits": {"timeout": "1m"}, "stages": [{"id": "a", "agent": "d"}]})
    log.step()
    log.now += 61
    plan = log.step()
    assert plan.decisions[0].type == "run_failed"
    assert log.plan().cancel == ["a"]


def test_fold_of_the_log_equals_the_incremental_state() -> None:
    log = Log(chain("a", "b", a={"approval": "required"}))
    log.step()
    log.finish("a", artifacts={"x": 1})
    log.add(ev.ApprovalDecided(stage="a", decision="approve"))
    log.step()
    assert fold(log.envs) == log.state
    assert ev.verify_chain(log.envs) == []


def test_a_fatal_failure_skips_the_retry_policy() -> None:
    log = Log(chain("a", a={"on_failure": {"retry": {"max_attempts": 3, "backoff": 0}}}))
    log.step()
    log.add(
        ev.AttemptFinished(
            stage="a", attempt=1, outcome="failed", fatal=True, error="401: check ANTHROPIC_API_KEY"
        )
    )
    plan = log.step()
    assert plan.decisions == [
        ev.StageFailed(stage="a", reason="401: check ANTHROPIC_API_KEY (after 1 attempts)")
    ]


def test_approval_timeout_fail_respects_on_failure_continue() -> None:
    log = Log(chain("a", "b", a={"approval": {"timeout": 60}, "on_failure": "continue"}))
    log.step()
    log.finish("a")
    log.now += 61
    log.step()
    assert log.status("a") == "failed" and log.state.stages["a"].tolerated
    assert started(log.step()) == ["b"]
