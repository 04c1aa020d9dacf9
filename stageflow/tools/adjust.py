"""``workflow_adjust``: change a run while it runs (``engine.adjust`` checks each change)."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.types import CallToolResult
from pydantic import Field

from stageflow.engine.adjust import Adjustment
from stageflow.engine.views import ReadModel, build_view
from stageflow.tools.briefs import next_step
from stageflow.tools.deps import ToolContext, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.results import tool_result

ACTOR = "mcp-client"

DESCRIPTION = """\
Change a run while it runs, as the human asks (do not decide on your own):
action='add_stage' adds an agent stage: stage (new id), agent, depends_on, optional needs
(<stage>.<artifact>), produces, before (stages not started yet that must wait for it);
'skip_stage' skips a pending stage marked optional; 'set_concurrency' raises
max_concurrent_agents for this run; 'escalate' hands a stage blocked by a false gate to a
decision agent (agent, default decision-maker). Approvals and escalations to a human cannot be
escalated. Each change is checked against the run's current DAG (unknown names, cycles, started
stages are refused, naming what is valid) and recorded in the audit log."""

Names = Annotated[list[str] | None, Field(description="stage ids")]


class AdjustResult(ReadModel):
    """The run after an adjustment."""

    run_id: str
    action: str
    stage: str | None = None
    adjustment: str = Field(description="what was recorded, as the audit log says it")
    status: str = Field(description="the run's status after the change")
    stages: dict[str, str] = Field(description="stage id -> status after the change")
    next_action: str


async def workflow_adjust(
    ctx: ToolContext,
    run_id: Annotated[str, Field(description="the run id returned by workflow_start")],
    action: Annotated[
        Literal["add_stage", "skip_stage", "set_concurrency", "escalate"],
        Field(description="what to change"),
    ],
    stage: Annotated[str | None, Field(description="the stage to add, skip or escalate")] = None,
    agent: Annotated[
        str | None, Field(description="add_stage: who runs it; escalate: the decision agent")
    ] = None,
    depends_on: Names = None,
    needs: Annotated[list[str] | None, Field(description="add_stage: <stage>.<artifact>")] = None,
    produces: Annotated[list[str] | None, Field(description="add_stage: artifact names")] = None,
    before: Names = None,
    description: Annotated[str | None, Field(description="add_stage: its goal")] = None,
    max_concurrent_agents: Annotated[
        int | None, Field(description="set_concurrency: the new limit", ge=1, le=64)
    ] = None,
    reason: Annotated[str | None, Field(description="why (recorded in the audit log)")] = None,
) -> Annotated[CallToolResult, AdjustResult]:
    """Adjust a running workflow."""
    app = deps(ctx)
    request = Adjustment(
        action=action,
        stage=stage,
        agent=agent,
        depends_on=depends_on or (),
        needs=needs or (),
        produces=produces or (),
        before=before or (),
        description=description or "",
        max_concurrent_agents=max_concurrent_agents,
        reason=reason,
    )
    with tool_errors():
        state = await app.service.adjust(run_id, request, actor=ACTOR)
    app.start_driving(run_id)
    view = build_view(state)
    line = state.adjustments[-1] if state.adjustments else action
    result = AdjustResult(
        run_id=run_id,
        action=action,
        stage=stage,
        adjustment=line,
        status=view.status,
        stages={s.id: s.status for s in view.stages},
        next_action=next_step(view),
    )
    summary = (
        f"recorded: {line}; run {run_id} is {view.status}. Follow with "
        f"workflow_status(run_id='{run_id}', wait_seconds=30)."
    )
    return tool_result(result, summary)
