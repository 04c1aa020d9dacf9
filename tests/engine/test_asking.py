"""The pure engine with an orchestrator: failure triage and rework routing. Questions are
raised only where the spec leaves a choice, answers are checked whoever gave them, and no
answer passes a human's gate or adds an attempt the spec does not allow."""

from __future__ import annotations

from typing import Any

import pytest

from stageflow import events as ev
from stageflow.engine.asking import QUESTIONS, Answer, Ask, decided_event
from stageflow.engine.decisions import decision_events
from stageflow.engine.planner import next_actions
from stageflow.errors import InvalidState
from stageflow.workflows.loader import check_template_text
from tests.engine.pure import Log

BUILD: dict[str, Any] = {
    "name": "b",
    "stages": [
        {
            "id": "build",
            "agent": "developer",
            "on_failure": {"retry": {"max_attempts": 2, "backoff": "0s"}},
        },
        {"id": "ship", "agent": "devops", "depends_on": ["build"]},
    ],
}


def _start(log: Log, stage: str) -> None:
    st = log.state.stages[stage]
    log.add(ev.AttemptStarted(stage=stage, attempt=st.attempt + 1, kind="initial"))


def _answer(log: Log, ask: Ask, answer: str, by: str = "model") -> None:
    log.add(decided_event(ask, Answer(answer, "scripted", by, "haiku"), 0.001))


def _failed_build(log: Log) -> None:
    _start(log, "build")
    log.finish("build", "failed", error="the patch does not apply")


def test_a_failure_the_policy_would_retry_waits_for_the_triage() -> None:
    log = Log(BUILD)
    _failed_build(log)
    plan = next_actions(log.state, log.now, ask=QUESTIONS)
    assert not plan.decisions and not plan.starts
    (ask,) = plan.questions
    assert (ask.question, ask.stage, ask.attempt, ask.attempts_left) == ("failure", "build", 1, 1)
    assert "does not apply" in ask.error
    # without an orchestrator the policy decides as it always did
    assert [type(d) for d in next_actions(log.state, log.now).decisions] == [ev.RetryScheduled]


def test_transient_retries_and_human_escalates_to_a_person() -> None:
    log = Log(BUILD)
    _failed_build(log)
    (ask,) = next_actions(log.state, log.now, ask=QUESTIONS).questions
    _answer(log, ask, "transient")
    assert log.state.spent_usd == pytest.approx(0.001)  # the run's cap counts the question
    assert log.state.orchestration == pytest.approx(0.001)
    (retry,) = next_actions(log.state, log.now, ask=QUESTIONS).decisions
    assert isinstance(retry, ev.RetryScheduled) and "scripted" in retry.reason

    log2 = Log(BUILD)
    _failed_build(log2)
    _answer(log2, ask, "human")
    (esc,) = next_actions(log2.state, log2.now, ask=QUESTIONS).decisions
    assert isinstance(esc, ev.StageEscalated) and (esc.kind, esc.to) == ("failure", "human")
    log2.add(esc)
    st = log2.state.stages["build"]
    assert st.status == "blocked" and log2.state.status == "waiting"
    assert next_actions(log2.state, log2.now, ask=QUESTIONS).empty  # nothing but a person


def _escalated() -> Log:
    log = Log(BUILD)
    _failed_build(log)
    (ask,) = next_actions(log.state, log.now, ask=QUESTIONS).questions
    _answer(log, ask, "human")
    log.add(*next_actions(log.state, log.now, ask=QUESTIONS).decisions)
    return log


def test_a_model_cannot_decide_a_failure_handed_to_a_person() -> None:
    log = _escalated()
    before = log.state
    for decision in ("approve", "reject"):
        with pytest.raises(InvalidState, match="a model cannot decide it"):
            decision_events(
                log.state,
                stage="build",
                decision=decision,  # type: ignore[arg-type]
                feedback=None,
                approver="assistant",
                attempt=None,
                via="tool",
            )
    assert log.state is before  # nothing was recorded
    # a decision agent's answer is not a person's either
    log.add(
        ev.EscalationDecided(stage="build", decision="approve", approver="agent:x", by_agent=True)
    )
    assert log.state.stages["build"].status == "blocked"
    # nor is another orchestrator answer: it is only read for a failed attempt
    _answer(log, Ask("failure", "build", 1), "transient")
    assert log.state.stages["build"].status == "blocked"
    assert next_actions(log.state, log.now, ask=QUESTIONS).empty


def test_a_person_approves_a_retry_or_rejects_it_and_on_failure_applies() -> None:
    log = _escalated()
    log.add(*decision_events(log.state, stage="build", decision="approve", feedback=None,
                             approver="ann", attempt=1, via="cli"))  # fmt: skip
    (start,) = next_actions(log.state, log.now, ask=QUESTIONS).starts
    assert (start.stage, start.attempt) == ("build", 2)

    log = _escalated()
    log.add(*decision_events(log.state, stage="build", decision="reject", feedback="no",
                             approver="ann", attempt=1, via="cli"))  # fmt: skip
    plan = next_actions(log.state, log.now, ask=QUESTIONS)
    assert not plan.questions and [type(d) for d in plan.decisions] == [ev.StageFailed]


def test_no_answer_adds_an_attempt_past_max_attempts() -> None:
    log = Log(BUILD)
    for n in (1, 2):
        _failed_build(log)
        plan = next_actions(log.state, log.now, ask=QUESTIONS)
        if n == 1:
            _answer(log, plan.questions[0], "transient")
            log.add(*next_actions(log.state, log.now, ask=QUESTIONS).decisions)
        else:  # the last allowed attempt failed: nothing to ask, the policy ends it
            assert not plan.questions
            assert [type(d) for d in plan.decisions] == [ev.StageFailed]
    # a stale "transient" for the last attempt changes nothing either
    _answer(log, Ask("failure", "build", 2), "transient")
    assert [type(d) for d in next_actions(log.state, log.now, ask=QUESTIONS).decisions] == [
        ev.StageFailed
    ]


@pytest.mark.parametrize("said", ["approve", "pass", "", "HUMAN", "transient\n"])
def test_a_verdict_outside_transient_or_human_is_replaced_by_the_rules(said: str) -> None:
    ask = Ask("failure", "build", 1, attempts_left=1)
    event = decided_event(ask, Answer(said, "trust me", "model", "haiku"), 0.002)
    assert (event.answer, event.decided_by) == ("transient", "rules")
    assert "not transient or human" in (event.fallback or "")
    assert event.cost_usd == 0.002  # what it cost is still the run's


ROUTED: dict[str, Any] = {
    "name": "r",
    "stages": [
        {"id": "design", "agent": "architect", "approval": "required"},
        {"id": "implement", "agent": "developer", "depends_on": ["design"]},
        {
            "id": "review",
            "agent": "reviewer",
            "depends_on": ["implement"],
            "on_changes_requested": {
                "rework": "implement",
                "alternatives": ["design"],
                "max": 2,
            },
        },
    ],
}


def _changes_requested() -> Log:
    log = Log(ROUTED)
    _start(log, "design")
    log.finish("design")
    log.add(ev.ApprovalDecided(stage="design", decision="approve", approver="ann", attempt=1))
    for stage in ("implement", "review"):
        _start(log, stage)
        log.finish(stage, *(("changes_requested",) if stage == "review" else ()))
    return log


@pytest.mark.parametrize(
    "target", ["deploy", "review", "review.decision1", "../design", "implement; design"]
)
def test_a_route_outside_the_allowed_stages_goes_to_the_declared_one(target: str) -> None:
    log = _changes_requested()
    (ask,) = next_actions(log.state, log.now, ask=QUESTIONS).questions
    assert ask.candidates == ("implement", "design")
    _answer(log, ask, target)
    event = log.state.answers[ask.key]
    assert (event.answer, event.decided_by) == ("implement", "rules")
    (rework,) = next_actions(log.state, log.now, ask=QUESTIONS).decisions
    assert isinstance(rework, ev.ReworkRequested) and rework.target == "implement"


def test_a_route_to_a_gated_stage_reruns_it_and_its_gate_waits_again() -> None:
    log = _changes_requested()
    (ask,) = next_actions(log.state, log.now, ask=QUESTIONS).questions
    _answer(log, ask, "design")
    log.add(*next_actions(log.state, log.now, ask=QUESTIONS).decisions)
    (start,) = next_actions(log.state, log.now, ask=QUESTIONS).starts
    assert (start.stage, start.kind) == ("design", "rework")
    log.add(ev.AttemptStarted(stage="design", attempt=2, kind="rework"))
    log.finish("design")
    assert log.state.stages["design"].status == "awaiting_approval"  # a person decides again
    assert next_actions(log.state, log.now, ask=QUESTIONS).empty


def test_alternatives_are_checked_like_the_rework_stage() -> None:
    text = """\
name: r
stages:
  - {id: design, agent: architect}
  - {id: implement, agent: developer, depends_on: [design]}
  - id: review
    agent: reviewer
    depends_on: [implement]
    on_changes_requested: {rework: implement, alternatives: [desgn, deploy, implement, review]}
  - {id: deploy, agent: devops, depends_on: [review]}
"""
    checked = check_template_text(text, source="r.yaml")
    assert checked.spec is None
    messages = [p.message for p in checked.errors]
    assert any("unknown stage 'desgn'" in m for m in messages), messages
    assert any("'deploy' is not upstream" in m for m in messages), messages
    assert any("'implement' is named twice" in m for m in messages), messages
    assert any("names this stage itself" in m for m in messages), messages


def test_a_failure_handed_to_a_person_sends_a_human_needed_notice() -> None:
    from stageflow.notify.notices import notice_for

    log = _escalated()
    env = log.envs[-1]
    assert isinstance(env.event, ev.StageEscalated)
    notice = notice_for(env, log.state, None)
    assert notice is not None and notice.kind == "human_needed" and notice.stage == "build"
    assert "a person should look" in notice.needed


def test_a_stage_cap_counts_the_questions_about_the_stage() -> None:
    """The orchestrator's requests about a stage are reserved against its budget_usd; the
    stage's next attempt must see what they cost (it saw only its attempts' usage, so the
    stage's attempts and the triage together could spend past the stage's cap)."""
    from stageflow.engine.metering import RunMeters
    from stageflow.engine.planner import StartAttempt

    spec = {**BUILD, "stages": [{**BUILD["stages"][0], "budget_usd": 0.10}, BUILD["stages"][1]]}
    log = Log(spec)
    _start(log, "build")
    log.finish("build", "failed", error="the patch does not apply", cost=0.07)
    (ask,) = next_actions(log.state, log.now, ask=QUESTIONS).questions
    log.add(ev.OrchestrationAsked(question="failure", stage="build", attempt=1, reserved_usd=0.01))
    assert log.state.stages["build"].capped_usd == pytest.approx(0.08)
    log.add(decided_event(ask, Answer("transient", "x", "model", "haiku"), 0.02, 0.01))
    assert log.state.spent_usd == pytest.approx(0.09)
    meters = RunMeters(None, "r-test", lambda: log.state, lambda: log.now)  # type: ignore[arg-type]
    meter = meters.open(StartAttempt("build", 2, "retry"), None)
    assert meter.remaining_usd() == pytest.approx(0.01)  # 0.10 - 0.07 - 0.02, not 0.03
