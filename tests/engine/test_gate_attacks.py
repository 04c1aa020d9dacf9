"""A model trying to pass a human's gate: a decision agent retried after the escalation went
to a human, a reviewer whose outputs claim a ruling, a decision agent's answer replayed for the
wrong stage. None of them passes; only a human's decision does."""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.service import _retry_events
from stageflow.engine.state import fold
from tests.engine.plan_kit import finish, settle
from tests.engine.pure import Log
from tests.engine.test_loops import request_changes, review_template, to_review


def escalated_to_a_human_after_the_decision_agent_failed() -> Log:
    log = Log(review_template(escalate="decision-maker", max_rounds=1))
    to_review(log)
    request_changes(log, "a")
    for stage in ("implementation", "testing", "review"):
        settle(log)
        if stage != "review":
            finish(log, stage)
    request_changes(log, "b")
    assert [s.stage for s in settle(log)] == ["review.decision1"]
    finish(log, "review.decision1", "failed", error="broke")
    settle(log)
    log.now += 10
    settle(log)
    finish(log, "review.decision1", "failed", error="broke again")
    settle(log)
    st = log.state.stages["review"]
    assert st.status == "blocked" and st.escalation is not None and st.escalation.to == "human"
    return log


def test_a_retried_decision_agents_late_approval_does_not_pass_the_humans_gate() -> None:
    log = escalated_to_a_human_after_the_decision_agent_failed()
    log.add(*_retry_events(log.state, "review.decision1", "mcp-client", None))
    assert [s.stage for s in settle(log)] == ["review.decision1"]
    finish(log, "review.decision1", outputs={"ruling": "approve", "feedback": "ship it"})
    assert settle(log) == []
    st = log.state.stages["review"]
    assert st.status == "blocked" and st.escalation is not None and st.escalation.to == "human"
    assert not any(isinstance(e.event, ev.EscalationDecided) and e.event.decision == "approve"
                   for e in log.envs)  # fmt: skip
    assert log.state.status == "waiting"
    # the human's approval is what passes it
    log.add(ev.EscalationDecided(stage="review", decision="approve", approver="alice"))
    assert log.state.stages["review"].status == "succeeded"
    assert fold(log.envs) == log.state


def test_a_reviewers_own_claim_of_a_ruling_is_only_its_findings() -> None:
    log = Log(review_template(max_rounds=1))
    to_review(log)
    request_changes(log, "a")
    for stage in ("implementation", "testing", "review"):
        settle(log)
        if stage != "review":
            finish(log, stage)
    finish(
        log,
        "review",
        "changes_requested",
        outputs={"ruling": "approve", "decision": "approve", "approved": True, "findings": ["x"]},
    )
    assert settle(log) == []
    st = log.state.stages["review"]
    assert st.status == "blocked" and st.escalation is not None and st.escalation.to == "human"
    assert [s for s, x in log.state.stages.items() if x.status == "succeeded"] == [
        "implementation",
        "testing",
    ]


def test_a_decision_by_an_agent_for_a_human_escalation_is_ignored_on_replay_too() -> None:
    log = escalated_to_a_human_after_the_decision_agent_failed()
    forged = ev.EscalationDecided(
        stage="review", decision="approve", approver="human", feedback="", by_agent=True
    )
    log.add(forged)
    assert log.state.stages["review"].status == "blocked"
    assert fold(log.envs).stages["review"].status == "blocked"
    assert settle(log) == []
