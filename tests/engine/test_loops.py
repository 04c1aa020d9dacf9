"""The pure engine on agent-driven loops: rework rounds, escalation to a decision agent or a
human, and the rule that a model never passes a human's gate."""

from __future__ import annotations

from typing import Any

from stageflow import events as ev
from stageflow.engine.plans import needed_refs
from stageflow.engine.state import fold
from tests.engine.plan_kit import finish, item, plan_template, planned, settle
from tests.engine.pure import Log


def review_template(*, escalate: Any = None, max_rounds: int = 2) -> dict[str, Any]:
    review: dict[str, Any] = {
        "id": "review",
        "agent": "reviewer",
        "depends_on": ["testing"],
        "needs": ["implementation.patch"],
        "produces": ["review"],
        "on_changes_requested": {"rework": "implementation", "max": max_rounds},
    }
    if escalate is not None:
        review["escalate"] = escalate
    return {
        "name": "fd",
        "stages": [
            {"id": "implementation", "agent": "developer", "produces": ["patch"]},
            {
                "id": "testing",
                "agent": "tester",
                "depends_on": ["implementation"],
                "produces": ["report"],
            },
            review,
            {"id": "deploy", "agent": "devops", "depends_on": ["review"], "produces": ["plan"]},
        ],
    }


def to_review(log: Log) -> None:
    for stage in ("implementation", "testing", "review"):
        assert [s.stage for s in settle(log)] == [stage]
        if stage != "review":
            finish(log, stage)


def request_changes(log: Log, *findings: str) -> None:
    finish(log, "review", "changes_requested", outputs={"findings": list(findings)}, summary="no")


def test_changes_requested_reruns_the_named_stage_with_the_findings_then_what_follows() -> None:
    log = Log(review_template())
    to_review(log)
    request_changes(log, "the CSV header is missing")
    starts = settle(log)
    assert [(s.stage, s.kind) for s in starts] == [("implementation", "rework")]
    feedback = starts[0].feedback or ""
    assert "the CSV header is missing" in feedback and "round 1 of 2" in feedback
    rework = [e.event for e in log.envs if isinstance(e.event, ev.ReworkRequested)]
    assert [(r.stage, r.target, r.round) for r in rework] == [("review", "implementation", 1)]
    # the reworked stage receives the review itself besides its own needs
    assert needed_refs(log.state, "implementation") == [("review", "review")]
    assert log.state.stages["testing"].rerun and log.state.stages["review"].rerun
    finish(log, "implementation")
    assert [(s.stage, s.kind) for s in settle(log)] == [("testing", "rerun")]
    finish(log, "testing")
    assert [(s.stage, s.kind) for s in settle(log)] == [("review", "rerun")]
    finish(log, "review", outputs={"approved": True})
    assert [s.stage for s in settle(log)] == ["deploy"]


def test_after_max_rounds_a_human_decides_and_only_a_human_decision_passes() -> None:
    log = Log(review_template(max_rounds=2))
    to_review(log)
    for round_ in (1, 2):
        request_changes(log, f"problem {round_}")
        for stage in ("implementation", "testing", "review"):
            assert [s.stage for s in settle(log)] == [stage]
            if stage != "review":
                finish(log, stage)
    request_changes(log, "still broken")
    assert settle(log) == []
    st = log.state.stages["review"]
    assert st.status == "blocked" and st.escalation is not None
    assert (st.escalation.to, st.escalation.kind) == ("human", "rework")
    assert st.escalation.findings == "- still broken"
    assert log.state.status == "waiting"
    # a decision agent's answer (however it got into the log) never passes a human's gate
    log.add(ev.EscalationDecided(stage="review", decision="approve", approver="x", by_agent=True))
    assert log.state.stages["review"].status == "blocked"
    assert settle(log) == []
    # a human's reject is one more round with their feedback; a human's approve accepts
    log.add(ev.EscalationDecided(stage="review", decision="reject", feedback="fix the header"))
    starts = settle(log)
    assert [s.stage for s in starts] == ["implementation"]
    assert "fix the header" in (starts[0].feedback or "")
    for stage in ("implementation", "testing"):
        finish(log, stage)
        settle(log)
    request_changes(log, "meh")
    settle(log)
    assert log.state.stages["review"].status == "blocked"
    log.add(ev.EscalationDecided(stage="review", decision="approve", approver="alice"))
    assert log.state.stages["review"].status == "succeeded"
    assert [s.stage for s in settle(log)] == ["deploy"]
    assert fold(log.envs) == log.state


def test_a_decision_agent_decides_used_up_rounds_once_then_a_human_does() -> None:
    log = Log(review_template(escalate="decision-maker", max_rounds=1))
    to_review(log)
    request_changes(log, "a")
    for stage in ("implementation", "testing", "review"):
        assert [s.stage for s in settle(log)] == [stage]
        if stage != "review":
            finish(log, stage)
    request_changes(log, "b")
    starts = settle(log)
    assert [s.stage for s in starts] == ["review.decision1"]
    assert log.state.stages["review"].status == "escalated"
    assert log.state.stage_spec("review.decision1").agent == "decision-maker"
    # it rejects with feedback: one more round, then (its one escalation used) a human
    finish(log, "review.decision1", outputs={"ruling": "reject", "feedback": "add tests"})
    starts = settle(log)
    assert [s.stage for s in starts] == ["implementation"]
    assert "add tests" in (starts[0].feedback or "")
    for stage in ("implementation", "testing"):
        finish(log, stage)
        settle(log)
    request_changes(log, "c")
    assert settle(log) == []
    st = log.state.stages["review"]
    assert st.status == "blocked" and st.escalation is not None and st.escalation.to == "human"
    decided = [e.event for e in log.envs if isinstance(e.event, ev.EscalationDecided)]
    assert [(d.decision, d.approver, d.by_agent) for d in decided] == [
        ("reject", "agent:decision-maker", True)
    ]


def test_an_unclear_or_failed_decision_goes_to_a_human() -> None:
    for outcome, outputs in (("passed", {"ruling": "yes!"}), ("failed", {})):
        log = Log(review_template(escalate="decision-maker", max_rounds=1))
        to_review(log)
        request_changes(log, "a")
        for stage in ("implementation", "testing", "review"):
            settle(log)
            if stage != "review":
                finish(log, stage)
        request_changes(log, "b")
        settle(log)
        finish(log, "review.decision1", outcome, outputs=outputs, error="broke")  # type: ignore[arg-type]
        settle(log)
        if outcome == "failed":  # retried once (on_failure retry 2, then continue)
            log.now += 10
            settle(log)
            finish(log, "review.decision1", "failed", error="broke again")
            settle(log)
        st = log.state.stages["review"]
        assert st.status == "blocked", (outcome, st.status)
        assert st.escalation is not None and st.escalation.to == "human"
        assert log.state.ended is None  # the decision agent's failure is tolerated


def gated(**escalate: Any) -> dict[str, Any]:
    return {
        "name": "g",
        "stages": [
            {"id": "tests", "agent": "tester", "produces": ["report"]},
            {
                "id": "ship",
                "agent": "devops",
                "depends_on": ["tests"],
                "produces": ["plan"],
                "gate": "tests.outputs.passed == true",
                **escalate,
            },
        ],
    }


def test_a_false_gate_goes_to_its_decision_agent_which_may_run_or_fail_the_stage() -> None:
    for ruling, status in (("approve", "running"), ("reject", "failed")):
        log = Log(gated(escalate={"agent": "decision-maker"}))
        settle(log)
        finish(log, "tests", outputs={"passed": False})
        assert [s.stage for s in settle(log)] == ["ship.decision1"]
        finish(log, "ship.decision1", outputs={"ruling": ruling, "feedback": "why not"})
        settle(log)
        assert log.state.stages["ship"].status == status, ruling


def test_a_false_gate_without_escalate_stays_a_humans_gate() -> None:
    log = Log(gated())
    settle(log)
    finish(log, "tests", outputs={"passed": False})
    assert settle(log) == []
    st = log.state.stages["ship"]
    assert (st.status, st.escalation) == ("blocked", None)


def test_an_audit_reworks_only_the_items_its_findings_name() -> None:
    spec = plan_template()
    spec["stages"][2]["on_changes_requested"] = {"rework": "execute", "max": 2}
    log = Log(spec)
    planned(log, item("t1"), item("t2"), item("t3", "t1"))
    for sid in ("execute.t1", "execute.t2"):
        finish(log, sid)
    settle(log)
    finish(log, "execute.t3")
    settle(log)
    finish(log, "audit", "changes_requested", outputs={"findings": {"t2": ["no header"], "": "x"}})
    starts = settle(log)
    assert [(s.stage, s.kind) for s in starts] == [("execute.t2", "rework")]
    feedback = starts[0].feedback or ""
    assert "no header" in feedback and "- x" in feedback
    assert log.state.stages["execute.t1"].attempt == 1  # not redone
    assert log.state.stages["execute"].status == "expanded"
    finish(log, "execute.t2")
    assert [(s.stage, s.kind) for s in settle(log)] == [("audit", "rerun")]


def test_a_human_rejection_at_an_approval_with_on_changes_requested_sends_items_back() -> None:
    spec = plan_template()
    spec["stages"][2].update(
        approval="required", on_changes_requested={"rework": "execute", "max": 1}
    )
    log = Log(spec)
    planned(log, item("t1"), item("t2"))
    finish(log, "execute.t1")
    finish(log, "execute.t2")
    settle(log)
    finish(log, "audit")
    settle(log)
    assert log.state.stages["audit"].status == "awaiting_approval"
    log.add(ev.ApprovalDecided(stage="audit", decision="reject", feedback="t1: wrong format"))
    starts = settle(log)
    assert [s.stage for s in starts] == ["execute.t1"]
    assert "wrong format" in (starts[0].feedback or "")


def test_a_rework_upstream_of_a_for_each_stage_reruns_its_items_without_replanning() -> None:
    log = Log(
        {
            "name": "side",
            "stages": [
                {"id": "plan", "agent": "coordinator", "plan": True},
                {"id": "schema", "agent": "architect", "produces": ["schema"]},
                {
                    "id": "execute",
                    "agent": "developer",
                    "for_each": "plan",
                    "depends_on": ["plan", "schema"],
                    "produces": ["summary"],
                },
                {
                    "id": "review",
                    "agent": "reviewer",
                    "depends_on": ["execute"],
                    "on_changes_requested": {"rework": "schema", "max": 1},
                },
            ],
        }
    )
    assert [s.stage for s in settle(log)] == ["plan", "schema"]
    finish(log, "plan", plan=[item("t1"), item("t2")])
    finish(log, "schema")
    settle(log)
    finish(log, "execute.t1")
    finish(log, "execute.t2")
    settle(log)
    finish(log, "review", "changes_requested", outputs={"findings": ["the schema is wrong"]})
    assert [(s.stage, s.kind) for s in settle(log)] == [("schema", "rework")]
    assert log.state.stages["execute"].status == "expanded"  # not pending: no second plan
    assert [e.event.type for e in log.envs].count("plan_expanded") == 1
    finish(log, "schema")
    assert [(s.stage, s.kind) for s in settle(log)] == [
        ("execute.t1", "rerun"),
        ("execute.t2", "rerun"),
    ]
    assert log.state.stages["execute.t1"].attempt == 2


def test_a_human_accepting_an_escalation_passes_the_stages_approval_too() -> None:
    spec = plan_template()
    spec["stages"][2].update(
        approval="required", on_changes_requested={"rework": "execute", "max": 1}
    )
    log = Log(spec)
    planned(log, item("t1"))
    finish(log, "execute.t1")
    settle(log)
    finish(log, "audit", "changes_requested", outputs={"findings": ["x"]})
    settle(log)
    finish(log, "execute.t1")
    settle(log)
    finish(log, "audit", "changes_requested", outputs={"findings": ["y"]})
    settle(log)
    assert log.state.stages["audit"].status == "blocked"
    log.add(ev.EscalationDecided(stage="audit", decision="approve", approver="alice"))
    assert log.state.stages["audit"].status == "succeeded"  # the human decided: no second ask


def test_two_reviewers_asking_for_changes_at_once_do_not_wait_for_each_other() -> None:
    spec = review_template(max_rounds=2)
    second = dict(spec["stages"][2], id="security")
    spec["stages"].insert(3, second)
    spec["stages"][-1]["depends_on"] = ["review", "security"]
    log = Log(spec)
    for stage in ("implementation", "testing"):
        settle(log)
        finish(log, stage)
    assert sorted(s.stage for s in settle(log)) == ["review", "security"]
    request_changes(log, "a")
    finish(log, "security", "changes_requested", outputs={"findings": ["b"]})
    starts = settle(log)
    assert [(s.stage, s.kind) for s in starts] == [("implementation", "rework")]
    rework = [e.event for e in log.envs if isinstance(e.event, ev.ReworkRequested)]
    assert len(rework) == 1  # one round: the other reviewer reruns after it and judges again
    assert log.state.stages["security"].status == "pending" and log.state.stages["security"].rerun
