"""``workflow_templates``: the templates and agents this project can use."""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult

from stageflow.prompts.templates import refresh_prompts
from stageflow.server.errors import tool_errors
from stageflow.tools.deps import ToolContext, deps
from stageflow.tools.models import (
    AgentInfo,
    InputInfo,
    StageInfo,
    TemplateInfo,
    TemplatesResult,
)
from stageflow.tools.results import tool_result
from stageflow.workflows.catalog import TemplateEntry

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


def _template(entry: TemplateEntry) -> TemplateInfo:
    spec = entry.spec
    info = TemplateInfo(
        name=entry.name,
        source=str(entry.source),
        layer=entry.layer,
        problems=[str(p) for p in entry.problems],
    )
    if spec is None:
        return info
    info.description = spec.description
    info.inputs = {
        k: InputInfo(type=v.type, required=v.required, default=v.default, description=v.description)
        for k, v in spec.inputs.items()
    }
    info.stages = [
        StageInfo(
            id=s.id,
            description=s.description,
            agent=s.agent,
            command=s.run,
            depends_on=s.depends_on,
            produces=s.produces,
            approval=s.approval is not None and s.approval.required,
            gate=s.gate,
            when=s.when,
        )
        for s in spec.stages
    ]
    return info


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
        agents = app.service.agents()
        catalog = app.service.templates(agents)
    result = TemplatesResult(
        templates=[_template(catalog.entries[n]) for n in catalog.names()],
        agents=[
            AgentInfo(
                name=a.name,
                model=a.model,
                description=a.description,
                source=a.source,
                layer=a.layer,
            )
            for a in (agents.get(n) for n in agents.names())
        ],
        errors=[str(p) for p in (*catalog.errors, *agents.errors)],
        runner=app.runner_label,
    )
    return tool_result(result, _summary(result))
