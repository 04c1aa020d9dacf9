"""Read model of the catalog: the templates and agents a project can use.

One model for ``workflow_templates`` and ``stageflow templates/agents --json``, so the MCP tool
and the CLI agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from stageflow.agents.definition import AgentDefinition
from stageflow.agents.registry import AgentRegistry
from stageflow.base import Model
from stageflow.workflows.catalog import TemplateCatalog, TemplateEntry


class InputInfo(Model):
    type: str
    required: bool
    default: Any = None
    description: str = ""


class StageInfo(Model):
    id: str
    description: str = ""
    agent: str | None = None
    command: str | None = Field(None, description="shell command of a command stage")
    depends_on: list[str] = Field(default_factory=list)
    produces: list[str] = Field(default_factory=list)
    approval: bool = Field(False, description="a human approves or rejects its result")
    gate: str | None = Field(None, description="condition; when false a human decides")
    when: str | None = Field(None, description="condition; when false the stage is skipped")
    plan: bool = Field(False, description="it returns a plan of work items")
    for_each: str | None = Field(None, description="one sub-stage per item of this plan stage")
    rework: str | None = Field(None, description="where its changes_requested sends the work")


class TemplateInfo(Model):
    name: str
    description: str = ""
    source: str
    layer: str
    inputs: dict[str, InputInfo] = Field(default_factory=dict)
    stages: list[StageInfo] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list, description="why the file failed to load")


class AgentInfo(Model):
    name: str
    model: str
    description: str = ""
    tools: list[str] = Field(default_factory=list, description="allowed tools; empty = inherit")
    source: str | None = None
    layer: str
    hash: str = Field("", description="first 12 hex digits of the definition's content hash")


class TemplatesResult(Model):
    templates: list[TemplateInfo]
    agents: list[AgentInfo]
    errors: list[str] = Field(
        default_factory=list, description="template and agent files that failed to load"
    )
    runner: str = Field(description="the runner that executes agent stages")


def agent_info(agent: AgentDefinition) -> AgentInfo:
    return AgentInfo(
        name=agent.name,
        model=agent.model,
        description=agent.description,
        tools=agent.tools,
        source=agent.source,
        layer=agent.layer,
        hash=agent.content_hash[:12],
    )


def template_info(entry: TemplateEntry) -> TemplateInfo:
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
            plan=s.plan is not None,
            for_each=s.for_each,
            rework=s.on_changes_requested.rework if s.on_changes_requested else None,
        )
        for s in spec.stages
    ]
    return info


def catalog_view(agents: AgentRegistry, catalog: TemplateCatalog, runner: str) -> TemplatesResult:
    """Every template (broken ones with their problems) and agent, and the files that failed."""
    return TemplatesResult(
        templates=[template_info(catalog.entries[n]) for n in catalog.names()],
        agents=[agent_info(agents.get(n)) for n in agents.names()],
        errors=[str(p) for p in (*catalog.errors, *agents.errors)],
        runner=runner,
    )
