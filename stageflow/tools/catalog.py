"""``workflow_templates``: the templates and agents this project can use."""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult

from stageflow.prompts.templates import refresh_prompts
from stageflow.tools.deps import ToolContext, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.models import TemplatesResult
from stageflow.tools.results import tool_result

DESCRIPTION = """\
List the workflow templates of this project and the agents they use. Call this first to pick a
template for workflow_start.

Each template shows its description, inputs (name, type, required, default), and its stages in
order: agent, depends_on, the artifacts it produces, and whether it has a human approval gate
(approval=true: the run waits for workflow_approve) or a gate condition. Templates come from
the built-in set, ~/.stageflow/workflows and <project>/.stageflow/workflows (later wins);
broken files are listed with their problems instead of hiding the others.

Agents show their model (opus, sonnet, haiku or a model id), source file and layer; agent files
that failed to load are listed in errors. `runner` says what executes agent stages (offline
means scripted output, no model calls)."""


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


async def workflow_templates(ctx: ToolContext) -> Annotated[CallToolResult, TemplatesResult]:
    """List templates (with stages, inputs, gates) and agents (model, source, load errors)."""
    app = deps(ctx)
    await refresh_prompts(ctx, app.settings)  # a template file added since: a new slash command
    with tool_errors():
        result = app.service.catalog()
    return tool_result(result, _summary(result))
