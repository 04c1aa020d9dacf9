"""The engine's questions to the orchestrator, and what it does with the answers. Pure.

Two decisions may be put to the orchestrator (``engine.orchestration`` asks them, outside the
planner, and logs ``orchestration_decided``):

- ``failure``: an attempt failed and the stage's ``on_failure`` allows another attempt: is it
  transient (retry, within those bounds) or does it need a human (the stage is escalated to a
  person, who approves a retry or rejects it: then ``on_failure`` applies as if no retries
  were left)? Only asked where the policy would retry: a failure it would not retry is not
  the orchestrator's to decide, and no answer adds an attempt the spec does not allow;
- ``rework``: a ``changes_requested`` whose ``on_changes_requested`` names ``alternatives``:
  which of the allowed stages the work goes back to.

The planner asks (``Ask``) only when the driver has an orchestrator (``ask`` not empty), and
reads a recorded answer back on replay instead of asking again. Every answer is checked here
whoever gave it: a verdict that is not ``transient``/``human``, or a stage not among the
candidates, is replaced by the rules' answer and the log says why. The rules keep the spec's
behaviour: a failure is retried as ``on_failure`` says, the work goes to ``rework``.
"""

from __future__ import annotations

from dataclasses import dataclass

from stageflow import events as ev
from stageflow.engine.records import RunState, StageState

__all__ = [
    "QUESTIONS",
    "Answer",
    "Ask",
    "answer_key",
    "decided_event",
    "rules",
    "triaged",
]

QUESTIONS: frozenset[str] = frozenset({"failure", "rework"})
VERDICTS: frozenset[str] = frozenset({"transient", "human"})


def answer_key(question: str, stage: str, attempt: int, round_: int = 0) -> str:
    """Where ``RunState.answers`` keeps the answer to one question."""
    return f"{question}:{stage}:{attempt}:{round_}"


@dataclass(frozen=True)
class Ask:
    """One question for the orchestrator, with what it needs to answer."""

    question: str  # failure | rework
    stage: str
    attempt: int
    round: int = 0
    error: str = ""  # failure: what went wrong (rework: the findings)
    retryable: bool = False  # failure: the runner marked it retryable
    outcome: str = "failed"  # failure: failed | timed_out
    attempts_left: int = 0  # failure: attempts the policy still allows
    candidates: tuple[str, ...] = ()  # rework: the allowed stages, the declared one first
    summary: str = ""  # rework: the requester's summary

    @property
    def key(self) -> str:
        return answer_key(self.question, self.stage, self.attempt, self.round)


@dataclass(frozen=True)
class Answer:
    """What the orchestrator said: ``by`` is ``model`` or ``rules`` (``fallback``: why)."""

    answer: str
    reason: str = ""
    by: str = "rules"
    model: str | None = None
    fallback: str | None = None


def rules(ask: Ask) -> Answer:
    """The rule answer: the spec's own behaviour (retry as ``on_failure`` says; the declared
    ``rework`` stage)."""
    if ask.question == "rework":
        return Answer(ask.candidates[0], "rules: the template's declared rework stage")
    if ask.retryable or ask.outcome == "timed_out":
        return Answer("transient", "rules: a provider or network hiccup, or a timeout")
    return Answer(
        "transient",
        f"rules: on_failure allows {ask.attempts_left} more attempt(s); retrying",
    )


def _invalid(ask: Ask, answer: Answer) -> str | None:
    if ask.question == "failure":
        if answer.answer not in VERDICTS:
            return f"the orchestrator answered {answer.answer!r}, not transient or human"
        return None
    if answer.answer not in ask.candidates:
        return (
            f"the orchestrator chose '{answer.answer[:80]}', which is not one of the stages "
            f"this rework may go back to ({', '.join(ask.candidates)})"
        )
    return None


def decided_event(
    ask: Ask, answer: Answer, cost_usd: float, reserved_usd: float = 0.0
) -> ev.OrchestrationDecided:
    """The event recording ``answer`` to ``ask``, checked (module docstring)."""
    why = _invalid(ask, answer)
    if why is not None:
        fallback = rules(ask)
        answer = Answer(fallback.answer, fallback.reason, "rules", answer.model, why)
    return ev.OrchestrationDecided(
        question="failure" if ask.question == "failure" else "rework",
        stage=ask.stage,
        attempt=ask.attempt,
        round=ask.round,
        answer=answer.answer,
        reason=answer.reason[:1000],
        decided_by="model" if answer.by == "model" else "rules",
        model=answer.model,
        fallback=answer.fallback[:1000] if answer.fallback else None,
        candidates=list(ask.candidates) if ask.question == "rework" else None,
        cost_usd=round(max(0.0, cost_usd), 10),
        reserved_usd=round(max(0.0, reserved_usd), 10),
    )


def triaged(
    state: RunState,
    st: StageState,
    retry: ev.RetryScheduled,
    *,
    attempts_left: int,
    ask: frozenset[str],
) -> list[ev.Event] | Ask:
    """What becomes of a retry the policy allows: the retry when no orchestrator is asked or
    it said transient; an escalation to a person when it said human; else the question."""
    if "failure" not in ask:
        return [retry]
    current = st.current
    outcome = current.outcome if current is not None and current.outcome else "failed"
    question = Ask(
        "failure",
        st.id,
        st.attempt,
        error=st.reason or outcome,
        retryable=st.transient,
        outcome=outcome,
        attempts_left=attempts_left,
    )
    answer = state.answers.get(question.key)
    if answer is None:
        return question
    if answer.answer != "human":
        return [retry.model_copy(update={"reason": f"{retry.reason} ({answer.reason})"})]
    return [
        ev.StageEscalated(
            stage=st.id,
            kind="failure",
            to="human",
            reason=(
                f"attempt {st.attempt} failed ({st.reason or outcome}) and the orchestrator "
                f"says a person should look ({answer.reason}): approve to retry it, reject "
                "to apply on_failure"
            ),
            findings=st.reason or "",
            by="orchestrator" if answer.decided_by == "model" else "rules",
        )
    ]


def routed(state: RunState, st: StageState, candidates: tuple[str, ...], round_: int) -> str | Ask:
    """The stage a rework goes back to: the recorded answer, else the question."""
    question = Ask(
        "rework",
        st.id,
        st.attempt,
        round_,
        error=_findings(st),
        candidates=candidates,
        summary=st.summary,
    )
    answer = state.answers.get(question.key)
    if answer is None:
        return question
    # checked when it was recorded; checked again: the log is the one source of truth
    return answer.answer if answer.answer in candidates else candidates[0]


def _findings(st: StageState) -> str:
    found = st.outputs.get("findings")
    if isinstance(found, list | dict):
        return str(found)[:4000]
    return str(found or st.summary or "")[:4000]
