"""Who may decide a stage waiting for a human: the attempt a decision is bound to, a
``by: human`` stage's person-only channels, named approvers and distinct approvals. Pure:
each check raises ``InvalidState``/``InvalidArgument`` saying what to do, or returns."""

from __future__ import annotations

from typing import Literal

from stageflow.engine.state import RunState, StageState
from stageflow.errors import InvalidArgument, InvalidState

__all__ = [
    "HUMAN_VIAS",
    "Decision",
    "Via",
    "check_approver",
    "check_attempt",
    "check_person",
]

Decision = Literal["approve", "reject"]
Via = Literal["cli", "dashboard", "elicitation", "tool"]
HUMAN_VIAS: frozenset[str] = frozenset({"cli", "dashboard", "elicitation"})


def check_person(state: RunState, stage: str, st: StageState, via: Via) -> None:
    """A stage whose approval is ``by: human`` takes decisions (its approval, and overriding
    its false gate) only from a person."""
    policy = state.spec.stage(stage).approval
    if policy is None or policy.by != "human" or via in HUMAN_VIAS:
        return
    how = f"--stage {stage}" + (f" --attempt {st.attempt}" if st.status != "blocked" else "")
    raise InvalidState(
        f"stage '{stage}' needs a person's decision (approval by: human), which a model "
        f"cannot give: ask the user to run `stageflow approve {state.run_id} {how}` (or "
        "reject with --feedback), or to decide in the dashboard"
    )


def check_approver(
    state: RunState, stage: str, st: StageState, decision: Decision, approver: str, via: Via
) -> None:
    """Refuse a decision the stage's approval policy does not take (see ``decide``)."""
    policy = state.spec.stage(stage).approval
    if policy is None:
        return
    check_person(state, stage, st, via)
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


def check_attempt(run_id: str, stage: str, st: StageState, attempt: int | None) -> None:
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
