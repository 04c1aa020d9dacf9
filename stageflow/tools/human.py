"""Asking the person, not the model: the elicitation behind ``workflow_approve``.

A stage with ``approval: {by: human}`` takes a decision only from a person. When the assistant
calls ``workflow_approve`` on such a gate, ``ask_human`` (a ``Resolve`` resolver, so it works in
both protocol eras: mid-call on handshake-era sessions, an input-required round trip on
2026-07-28) has the server ask the user through their MCP client, showing the run, the stage,
the attempt and what to review. The user's answer is the decision; the model's ``decision``
and ``feedback`` arguments are only a proposal shown in the question. When no person needs
asking (no such gate waits, or it takes ``by: any``), the resolver answers at once without a
question; when the client cannot elicit, the tool tells the assistant how the user can decide
(``stageflow approve`` or the dashboard) and the gate keeps waiting.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from mcp.server.mcpserver import Elicit
from pydantic import BaseModel, Field, create_model

from stageflow.engine.gitviews import merge_gate
from stageflow.errors import StageflowError
from stageflow.tools.deps import ToolContext, deps

__all__ = [
    "NOT_ASKED",
    "NO_CLIENT_SUPPORT",
    "BudgetConsent",
    "HumanDecision",
    "LandConsent",
    "ask_budget",
    "ask_human",
    "ask_land",
]

NOT_ASKED = "not-asked"  # no person-only gate waits here: the call decides as before
NO_CLIENT_SUPPORT = "no-elicitation"  # a person must decide, and this client cannot ask them


class HumanDecision(BaseModel):
    """What the person answers (an elicitation form: flat primitive fields only)."""

    decision: Literal["approve", "reject"] = Field(description="approve, or reject to rework")
    feedback: str = Field("", description="for reject: what must change")
    name: str = Field("", description="your name, recorded as the approver")
    attempt: int = Field(0, description="the attempt you are deciding (as shown)")
    stage: str = Field("", description="the stage you are deciding (as shown)")


@lru_cache(maxsize=256)
def _form(stage: str, attempt: int) -> type[HumanDecision]:
    """The form for one stage's attempt: both are its defaults, so the decision is bound to
    what the question showed (the engine refuses it if another attempt waits by then, and it
    never lands on another stage that started waiting meanwhile)."""
    return create_model(
        "HumanDecision",
        __base__=HumanDecision,
        attempt=(int, Field(attempt, description="the attempt you are deciding (as shown)")),
        stage=(str, Field(stage, description="the stage you are deciding (as shown)")),
    )


def _can_elicit(ctx: ToolContext) -> bool:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


async def ask_human(
    run_id: str,
    ctx: ToolContext,
    stage: str | None = None,
    attempt: int | None = None,
    decision: str | None = None,
    feedback: str | None = None,
) -> Elicit[HumanDecision] | str:
    """The question to put to the person, or a marker when none is to be asked."""
    try:
        state = await deps(ctx).service.state(run_id)
    except StageflowError:
        return NOT_ASKED  # the tool body reports the wrong id the usual way
    waiting = [
        sid for sid, st in state.stages.items() if st.status in ("awaiting_approval", "blocked")
    ]
    target = stage if stage is not None else (waiting[0] if len(waiting) == 1 else None)
    if target not in waiting or target is None:
        return NOT_ASKED
    spec = state.stage_spec(target)
    escalation = state.stages[target].escalation  # escalated to a person: only they decide
    if escalation is None and (spec.approval is None or spec.approval.by != "human"):
        return NOT_ASKED
    if attempt is not None and attempt != state.stages[target].attempt:
        return NOT_ASKED  # the stale attempt is refused by the engine, with what changed
    if not _can_elicit(ctx):
        return NO_CLIENT_SUPPORT
    st = state.stages[target]
    if escalation is not None:
        what = f"It was escalated to you: {escalation.reason}. Open findings: " + (
            escalation.findings[:500] or "none"
        )
    elif target in state.git.merge_stages:  # a merge conflict the person resolves
        what = merge_gate(state, target, st.reason)[0]
    elif st.status == "blocked":
        what = f"Its gate is false ({spec.gate}): approve to run it anyway, or reject to fail it."
    else:
        what = (spec.approval.prompt if spec.approval else None) or (
            f"review the output of '{target}'"
        )
    files = ", ".join(
        f"{target}/{name} v{ref.version}" for name, ref in sorted(st.artifacts.items())
    )
    proposal = f" The assistant proposes: {decision}." if decision else ""
    if feedback:
        proposal += f" Its feedback: {feedback[:300]}"
    which = "its gate" if st.status == "blocked" else f"attempt {st.attempt}"
    message = (
        f"stageflow run {run_id}: stage '{target}', {which}, waits for your "
        f"decision. {what} Artifacts: {files or 'none'}.{proposal} Only your answer decides."
    )
    shown = 0 if st.status == "blocked" else st.attempt  # a gate decides no attempt
    return Elicit(message, _form(target, shown))


class BudgetConsent(BaseModel):
    """The person's answer to "may this run spend more?" (an elicitation form)."""

    resume: bool = Field(description="let the run continue")
    budget_usd: float = Field(0.0, ge=0, description="the run's new USD cap (0 keeps it)")
    name: str = Field("", description="your name, recorded as who decided")


@lru_cache(maxsize=256)
def _consent_form(proposed: float) -> type[BudgetConsent]:
    return create_model(
        "BudgetConsent",
        __base__=BudgetConsent,
        budget_usd=(float, Field(proposed, ge=0, description="the run's new USD cap (0 keeps it)")),
    )


async def ask_budget(
    run_id: str,
    action: str,
    ctx: ToolContext,
    budget_usd: float | None = None,
) -> Elicit[BudgetConsent] | str:
    """Ask the person before a resume lets the run spend more (a new cap, or past a cap it
    stopped at); a marker when there is nothing to ask."""
    if action != "resume":
        return NOT_ASKED
    try:
        state = await deps(ctx).service.state(run_id)
    except StageflowError:
        return NOT_ASKED
    if not state.paused or not (state.budget_paused or budget_usd is not None):
        return NOT_ASKED  # the engine says what is wrong, or nothing needs a person
    if not _can_elicit(ctx):
        return NO_CLIENT_SUPPORT
    cap = f"${state.budget_usd:.2f}" if state.budget_usd is not None else "no cap"
    where = "stopped at a budget cap" if state.budget_paused else "is paused"
    asked = f" with a cap of ${budget_usd:.2f}" if budget_usd is not None else ""
    message = (
        f"stageflow run {run_id} {where} (spent ${state.spent_usd:.4f}, {cap}). The "
        f"assistant asks to resume it{asked}. Only your answer lets it spend more."
    )
    return Elicit(message, _consent_form(float(budget_usd or 0.0)))


class LandConsent(BaseModel):
    """The person's answer to "may this run's work land on your branch?" (a form)."""

    land: bool = Field(description="land the run's work on the branch named")
    name: str = Field("", description="your name, recorded as who landed it")


async def ask_land(
    run_id: str,
    action: str,
    ctx: ToolContext,
    strategy: str = "squash",
    into: str | None = None,
) -> Elicit[LandConsent] | str:
    """Ask the person before ``land`` changes their branch: a model never lands a run. A
    marker when there is nothing to ask (another action, a wrong id, a run that cannot land:
    the engine then says what is wrong)."""
    if action != "land":
        return NOT_ASKED
    try:
        state = await deps(ctx).service.state(run_id)
    except StageflowError:
        return NOT_ASKED
    git = state.git
    if state.ended != "completed" or not git.on or not git.branch:
        return NOT_ASKED
    if any(done.into == (into or git.target) for done in git.landed):
        return NOT_ASKED  # landed there already: the engine says so
    if not _can_elicit(ctx):
        return NO_CLIENT_SUPPORT
    target = into or git.target or "the branch the run started from"
    head = f", last commit {git.head[:12]}" if git.head else ""
    message = (
        f"stageflow run {run_id} is complete; its work is on branch {git.branch}{head}. The "
        f"assistant asks to land it into {target} ({strategy}). This changes your branch and "
        "working tree; only your answer lands it."
    )
    return Elicit(message, LandConsent)
