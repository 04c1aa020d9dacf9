"""The structured results of the tools (their ``outputSchema``s).

``workflow_status`` reuses the engine's read models (``RunView``, ``RunListItem``) so the CLI's
``--json`` and the MCP tool agree; the others are defined here.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from stageflow.base import Model
from stageflow.engine.catalog_view import (  # the catalog models live with the engine's views
    AgentInfo,
    InputInfo,
    StageInfo,
    TemplateInfo,
    TemplatesResult,
)
from stageflow.engine.forecasts import RunForecast
from stageflow.engine.views import RunListItem, RunView
from stageflow.tools.briefs import CatalogBrief, RunBrief

__all__ = [
    "AgentInfo",
    "InputInfo",
    "StageInfo",
    "TemplateInfo",
    "TemplatesBrief",
    "TemplatesResult",
]


class StageCost(Model):
    stage: str
    p50_usd: float
    p90_usd: float
    basis: str  # history, profile, prior or none


class ForecastBrief(Model):
    # a run's forecast, compact (``stageflow estimate --json`` has every figure); no
    # docstring: it would go into workflow_start's output schema

    p50_usd: float
    p90_usd: float
    expected_stages: float
    expected_reworks: float
    stages: list[StageCost]

    @classmethod
    def of(cls, fc: RunForecast) -> ForecastBrief:
        return cls(
            p50_usd=fc.p50_usd,
            p90_usd=fc.p90_usd,
            expected_stages=fc.expected_stages,
            expected_reworks=fc.expected_reworks,
            stages=[
                StageCost(stage=s.stage, p50_usd=s.p50_usd, p90_usd=s.p90_usd, basis=s.basis)
                for s in fc.stages
            ],
        )


class StartResult(Model):
    run_id: str | None = Field(None, description="null for a dry run")
    template: str
    status: str = Field(description="the run's status, or 'dry_run'")
    runner: str
    stages: list[str]
    chosen: dict[str, Any] | None = Field(
        None, description='template="auto": the template chosen, why, and by model or rules'
    )
    next_action: str
    forecast: ForecastBrief | None = None
    confirm: str | None = Field(None, description="what the human must confirm first")


class StatusResult(Model):
    run: RunBrief | None = Field(None, description="the run, when run_id was given")
    full: RunView | None = Field(
        None, description='with detail="full": every attempt, its usage and context manifest'
    )
    runs: list[RunListItem] = Field(
        default_factory=list, description="recent runs, newest first, when no run_id was given"
    )
    changed: bool = Field(False, description="the run changed while waiting")
    waited_s: float = 0.0


class TemplatesBrief(CatalogBrief):
    full: TemplatesResult | None = Field(
        None, description='with detail="full": descriptions, sources, layers, tools, hashes'
    )


class CommandResult(Model):
    """The outcome of an approval, rejection or control action."""

    run_id: str
    action: str
    stage: str | None = None
    actor: str
    status: str = Field(description="the run's status after the action")
    stages: dict[str, str] = Field(description="stage id -> status after the action")
    next_action: str
    commit: str | None = None  # land: the new commit on the target branch


class ArtifactPage(Model):
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
