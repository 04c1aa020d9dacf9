"""``workflow_templates``: the templates and agents this project can use."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.types import CallToolResult
from pydantic import Field

from stageflow.prompts.templates import refresh_prompts
from stageflow.tools.briefs import catalog_brief
from stageflow.tools.deps import ToolContext, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.models import TemplatesBrief, TemplatesResult
from stageflow.tools.results import tool_result

DESCRIPTION = """\
List the workflow templates of this project and the agents they use. Call this first to pick a
template for workflow_start.

Each template shows its description, its inputs besides the task (type, required, default),
and its stages in order: agent, `after` (depends_on), and whether a human approves its result
(approval=true: the run waits for workflow_approve) or it has a gate condition. Broken template
files are listed with their problems instead of hiding the others. Agents show their model
(opus, sonnet, haiku or a model id). `runner` says what executes agent stages (offline means
scripted output, no model calls). detail="full" adds stage descriptions, produced artifacts,
conditions, source files, layers, agent tools and hashes."""


def _summary(result: TemplatesResult) -> str:
    lines = [f"{len(result.templates)} templates (runner: {result.runner}):"]
    for t in result.templates:
        if t.problems:
            lines.append(f"- {t.name}: failed to load ({t.problems[0]})")
            continue
        stages = ", ".join(s.id + ("*" if s.approval else "") for s in t.stages)
        lines.append(f"- {t.name}: {t.description} [{stages}]")
    lines.append("(* = human approval gate)")
    lines.append(
        f"{len(result.agents)} agents: " + ", ".join(f"{a.name} ({a.model})" for a in result.agents)
    )
    lines.extend(f"error: {e}" for e in result.errors)
    return "\n".join(lines)


async def workflow_templates(
    ctx: ToolContext,
    detail: Annotated[
        Literal["brief", "full"],
        Field(description="full adds descriptions, conditions, sources and agent tools"),
    ] = "brief",
) -> Annotated[CallToolResult, TemplatesBrief]:
    """List templates (with stages, inputs, gates) and agents (model, load errors)."""
    app = deps(ctx)
    await refresh_prompts(ctx, app.settings)  # a template file added since: a new slash command
    with tool_errors():
        result = app.service.catalog()
    brief = TemplatesBrief(
        **catalog_brief(result).model_dump(), full=result if detail == "full" else None
    )
    return tool_result(brief, _summary(result))
