"""The structured results of the tools (their ``outputSchema``s).

``workflow_status`` reuses the engine's read models (``RunView``, ``RunListItem``) so the CLI's
``--json`` and the MCP tool agree; the others are defined here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from stageflow.engine.views import RunListItem, RunView


class InputInfo(BaseModel):
    type: str
    required: bool
    default: Any = None
    description: str = ""


class StageInfo(BaseModel):
    id: str
    description: str = ""
    agent: str | None = None
    command: str | None = Field(None, description="shell command of a command stage")
    depends_on: list[str] = Field(default_factory=list)
    produces: list[str] = Field(default_factory=list)
    approval: bool = Field(False, description="a human approves or rejects its result")
    gate: str | None = Field(None, description="condition; when false a human decides")
    when: str | None = Field(None, description="condition; when false the stage is skipped")


class TemplateInfo(BaseModel):
    name: str
    description: str = ""
    source: str
    layer: str
    inputs: dict[str, InputInfo] = Field(default_factory=dict)
    stages: list[StageInfo] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list, description="why the file failed to load")


class AgentInfo(BaseModel):
    name: str
    model: str
    description: str = ""
    source: str | None = None
    layer: str


class TemplatesResult(BaseModel):
    templates: list[TemplateInfo]
    agents: list[AgentInfo]
    errors: list[str] = Field(
        default_factory=list, description="template and agent files that failed to load"
    )
    runner: str = Field(description="the runner that executes agent stages")


class StartResult(BaseModel):
    run_id: str
    template: str
    status: str
    runner: str
    stages: list[str]
    next_action: str


class StatusResult(BaseModel):
    run: RunView | None = Field(None, description="the run's dashboard, when run_id was given")
    runs: list[RunListItem] = Field(
        default_factory=list, description="recent runs, newest first, when no run_id was given"
    )
    changed: bool = Field(False, description="the run changed while waiting")
    waited_s: float = 0.0


class CommandResult(BaseModel):
    """The outcome of an approval, rejection or control action."""

    run_id: str
    action: str
    stage: str | None = None
    actor: str
    status: str = Field(description="the run's status after the action")
    stages: dict[str, str] = Field(description="stage id -> status after the action")
    next_action: str


class ArtifactPage(BaseModel):
    run_id: str
    stage: str
    name: str
    version: int
    size: int = Field(description="size in bytes (UTF-8)")
    total_chars: int
    offset: int = Field(description="index of the first character of this page")
    next_offset: int | None = Field(
        None, description="pass as offset to read the next page; null on the last page"
    )
    sha256: str
    uri: str
    text: str
