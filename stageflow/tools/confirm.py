"""The cost confirmation over MCP is the human's, not the model's.

A run whose forecast is above ``[budget] confirm_above_usd`` waits before anything starts. The
model that calls ``workflow_approve(decision='approve')`` on it cannot confirm the spend by
itself: the server asks the human directly, through MCP elicitation (a form the client shows
to the user, whose answer the model never writes), and only an accepted "start" confirms. The
question is a resolver (``Resolve(ask_the_human)``), so it works in both protocol eras (sent
mid-call, or as an input-required round). A client that cannot elicit gets an error saying
where the human confirms instead (``stageflow approve RUN`` in a terminal). Rejecting (which
cancels the run and spends nothing) needs no such check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import AcceptedElicitation, Elicit
from pydantic import BaseModel, Field

from stageflow.engine.forecasts import CONFIRM_GATE, RunForecast
from stageflow.engine.state import RunState
from stageflow.errors import InvalidState, StageflowError
from stageflow.tools.deps import ToolContext, deps

__all__ = ["ConfirmSpend", "NotAsked", "ask_the_human", "human_confirmed"]


class ConfirmSpend(BaseModel):  # an elicitation schema: flat primitive fields only
    start: bool = Field(description="start the run (it may spend up to its forecast and budget)")


@dataclass(frozen=True)
class NotAsked:
    """The resolver did not ask: nothing to confirm, or no way to ask the human."""

    reason: str  # "nothing to confirm" | "no elicitation"


def _can_elicit(ctx: ToolContext) -> bool:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    # a bare ``elicitation: {}`` (before modes existed) counts as form support; url-only does not
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def question(state: RunState) -> str:
    """What the human is asked (the forecast, the threshold and the run's budget)."""
    fc = RunForecast.model_validate(state.forecast) if state.forecast else None
    cost = f"${fc.p50_usd:.2f} (p50) to ${fc.p90_usd:.2f} (p90)" if fc else "an unknown amount"
    limit = f"${state.confirm_above_usd:.2f}" if state.confirm_above_usd is not None else "?"
    cap = f"; its budget cap is ${state.budget_usd:.2f}" if state.budget_usd is not None else ""
    return (
        f"stageflow run {state.run_id} ({state.template}) is forecast to cost {cost}, above "
        f"this project's confirm_above_usd {limit}{cap}. Start it?"
    )


async def ask_the_human(
    run_id: str, decision: str, stage: str | None, ctx: ToolContext
) -> Elicit[ConfirmSpend] | NotAsked:
    """``workflow_approve``'s resolver: ask the human when the call would confirm a run's
    cost forecast, and only then."""
    if decision != "approve" or stage not in (None, CONFIRM_GATE):
        return NotAsked("nothing to confirm")
    try:
        state = await deps(ctx).service.state(run_id)
    except StageflowError:
        return NotAsked("nothing to confirm")  # the tool body reports the unknown run
    if state.confirmation != "pending":
        return NotAsked("nothing to confirm")
    if not _can_elicit(ctx):
        return NotAsked("no elicitation")
    return Elicit(question(state), ConfirmSpend)


def human_confirmed(state: RunState, answer: Any, project: str) -> None:
    """Raise ``InvalidState`` unless the human accepted to start ``state``'s run (what they
    answered to ``ask_the_human``); the message says what to do instead."""
    if isinstance(answer, AcceptedElicitation) and isinstance(answer.data, ConfirmSpend):
        if answer.data.start:
            return
        raise InvalidState(
            f"the human did not confirm the cost of run {state.run_id}: it still waits, nothing "
            "ran. To cancel it, workflow_approve(decision='reject') with their reason."
        )
    data = answer.data if isinstance(answer, AcceptedElicitation) else None
    if isinstance(data, NotAsked) and data.reason == "no elicitation":
        raise InvalidState(
            f"run {state.run_id} waits for the human to confirm its cost, and this client "
            "cannot ask them (no MCP elicitation). Ask the human to confirm in a terminal: "
            f"`stageflow approve {state.run_id} --project {project}`. Do not confirm it yourself."
        )
    action = getattr(answer, "action", "no answer")
    raise InvalidState(
        f"the human did not confirm the cost of run {state.run_id} ({action}): it still waits, "
        "nothing ran. Ask them again, or workflow_approve(decision='reject') to cancel it."
    )
