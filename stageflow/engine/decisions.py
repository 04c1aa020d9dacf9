"""A human's decision on a waiting stage, as the event it records. Pure: no I/O.

``decision_events`` turns approve/reject of the stage waiting (an approval, a false gate, an
escalation to a person) into ``approval_decided``, ``gate_decided`` or ``escalation_decided``,
refusing what the stage does not take: a decision about another attempt than the one waiting,
a model's decision (``via`` tool) where only a person decides (``approval: {by: human}``, and
every escalation to a person), an approver the policy does not name, a second approval by the
same person.
"""

from __future__ import annotations

from typing import Literal

from stageflow import events as ev
from stageflow.engine.state import RunState, StageState
from stageflow.errors import InvalidArgument, InvalidState, NotFound

__all__ = ["HUMAN_VIAS", "Decision", "Via", "decision_events"]

Decision = Literal["approve", "reject"]
# how a decision reached stageflow; the first three are a person's
Via = Literal["cli", "dashboard", "elicitation", "tool"]
HUMAN_VIAS: frozenset[str] = frozenset({"cli", "dashboard", "elicitation"})


def decision_events(
    state: RunState,
    *,
    stage: str | None,
    decision: Decision,
    feedback: str | None,
    approver: str,
    attempt: int | None,
    via: Via,
) -> list[ev.Event]:
    """The event recording the decision, or the refusal (see the module docstring)."""
    target = _waiting_stage(state, stage)
    st = state.stages[target]
    if st.escalation is not None:  # escalated to a human: only this decides it
        if via not in HUMAN_VIAS:
            raise InvalidState(
                f"stage '{target}' was escalated to a person ({st.escalation.reason}), "
                "and a model cannot decide it: ask the user to run `stageflow approve "
                f"{state.run_id} --stage {target}` (or reject with --feedback), or to "
                "decide in the dashboard"
            )
        if st.escalation.kind in ("rework", "failure"):  # bound to the attempt the human read
            _check_attempt(state.run_id, target, st, attempt)
        elif attempt is not None:
            raise InvalidArgument(
                f"stage '{target}' was escalated on its gate condition, not on an "
                "attempt to review; decide it without attempt"
            )
        return [
            ev.EscalationDecided(
                stage=target, decision=decision, feedback=feedback, approver=approver
            )
        ]
    if st.status == "awaiting_approval":
        if via == "elicitation" and attempt is None:
            raise InvalidArgument("a person's answer must name the attempt it decides")
        _check_attempt(state.run_id, target, st, attempt)
        _check_approver(state, target, st, decision, approver, via)
        return [
            ev.ApprovalDecided(
                stage=target,
                decision=decision,
                feedback=feedback,
                approver=approver,
                attempt=st.attempt,
                via=via,
            )
        ]
    if attempt is not None:
        raise InvalidArgument(
            f"stage '{target}' waits on its gate condition, not on an attempt to "
            "review; decide it without attempt"
        )
    _check_person(state, target, st, via)
    return [ev.GateDecided(stage=target, decision=decision, feedback=feedback, approver=approver)]


def _check_person(state: RunState, stage: str, st: StageState, via: Via) -> None:
    """A stage whose approval is ``by: human`` takes decisions (its approval, and overriding
    its false gate) only from a person."""
    policy = state.stage_spec(stage).approval
    if policy is None or policy.by != "human" or via in HUMAN_VIAS:
        return
    how = f"--stage {stage}" + (f" --attempt {st.attempt}" if st.status != "blocked" else "")
    raise InvalidState(
        f"stage '{stage}' needs a person's decision (approval by: human), which a model "
        f"cannot give: ask the user to run `stageflow approve {state.run_id} {how}` (or "
        "reject with --feedback), or to decide in the dashboard"
    )


def _check_approver(
    state: RunState, stage: str, st: StageState, decision: Decision, approver: str, via: Via
) -> None:
    """Refuse a decision the stage's approval policy does not take (see ``decide``)."""
    policy = state.stage_spec(stage).approval
    if policy is None:
        return
    _check_person(state, stage, st, via)
    if policy.approvers and approver not in policy.approvers:
        raise InvalidArgument(
            f"{approver!r} is not an approver of stage '{stage}' (approvers: "
            f"{', '.join(policy.approvers)})"
        )
    if decision == "approve" and approver in st.approvals:
        left = policy.min_approvals - len(set(st.approvals))
        raise InvalidState(
            f"{approver} has already approved attempt {st.attempt} of stage '{stage}'; it "
            f"needs {left} more approval(s) from other approvers"
        )


def _check_attempt(run_id: str, stage: str, st: StageState, attempt: int | None) -> None:
    """Refuse a decision about another attempt than the one waiting (see ``decide``)."""
    if attempt is None:
        if st.shown > 1:
            raise InvalidArgument(
                f"stage '{stage}' has been put up for approval {st.shown} times; attempt "
                f"{st.attempt} waits now. Read it (workflow_status {run_id}) and decide with "
                f"attempt={st.attempt} (CLI: --attempt {st.attempt})"
            )
        return
    if attempt != st.attempt:
        what = (
            f"attempt {attempt} was replaced: the stage ran again and attempt {st.attempt} "
            "waits now, which you have not read"
            if attempt < st.attempt
            else f"stage '{stage}' has no attempt {attempt}; attempt {st.attempt} waits"
        )
        raise InvalidState(
            f"decision refused: {what}. Read attempt {st.attempt} (workflow_status {run_id}) "
            f"and decide with attempt={st.attempt} (CLI: --attempt {st.attempt})"
        )


def _waiting_stage(state: RunState, stage: str | None) -> str:
    waiting = [
        sid for sid, st in state.stages.items() if st.status in ("awaiting_approval", "blocked")
    ]
    if stage is None:
        if len(waiting) == 1:
            return waiting[0]
        if not waiting:
            raise InvalidState(
                f"run {state.run_id} has no stage waiting for a decision (run is {state.status})"
            )
        raise InvalidArgument(
            f"several stages are waiting ({', '.join(waiting)}); name one with stage"
        )
    if stage not in state.stages:
        raise NotFound("stage", stage, known=list(state.stages))
    st = state.stages[stage]
    if stage not in waiting:
        extra = f"; waiting: {', '.join(waiting)}" if waiting else ""
        raise InvalidState(
            f"stage '{stage}' is not waiting for a decision (it is {st.status}){extra}"
        )
    return stage
