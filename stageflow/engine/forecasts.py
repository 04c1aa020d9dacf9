"""A run's cost forecast: the model stored with the run, the seam that makes it, the
confirmation it may require, and the comparison status shows as the run goes.

``Estimator`` (``stageflow.learning`` provides one) forecasts a template for a task before the
run exists; ``Service.start_run`` stores the forecast on ``run_created``, and when its p90 is
above ``[budget] confirm_above_usd`` the run waits, with nothing started, for a human's
decision through the approval path (``Service.decide``: ``workflow_approve`` over MCP,
``stageflow approve`` or the run command's prompt on the CLI). A configured threshold with no
estimator, or an estimator that fails, asks for the confirmation too: a cap is never skipped
because the forecast is missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import Field

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.base import Model
from stageflow.config import Settings
from stageflow.errors import InvalidState, Problem, SpecError
from stageflow.workflows.spec import WorkflowSpec

CONFIRM_GATE = "cost_confirmation"  # how status names the confirmation a run waits for

Basis = Literal["history", "profile", "prior", "unpriced", "none"]


class StageForecast(Model):
    """One stage's expected cost: when it runs, its cost's median and 90th percentile."""

    stage: str
    agent: str | None = None
    model: str | None = Field(None, description="the model it would ask for")
    task_type: str | None = None
    runs: float = Field(1.0, description="probability that the stage runs (0..1)")
    attempts: float = Field(1.0, description="expected attempts when it runs (retries, reworks)")
    reworks: float = Field(0.0, description="expected reworks when it runs")
    p50_usd: float = 0.0
    p90_usd: float = 0.0
    basis: Basis = Field(
        "prior",
        description="history: this stage of this template; profile: the agent, task type and "
        "model elsewhere; prior: tokens per role x the price table; unpriced: a model with no "
        "price and no history (its cost is unknown, counted as 0 here); none: a command",
    )
    samples: int = Field(0, description="past attempts the figures come from")


class RunForecast(Model):
    """The forecast of a whole run (totals are percentiles of the run's cost, not sums)."""

    template: str
    p50_usd: float
    p90_usd: float
    mean_usd: float
    expected_stages: float = Field(description="stages expected to run")
    expected_reworks: float = Field(description="reworks expected over the run")
    stages: list[StageForecast] = Field(default_factory=list)
    prices_as_of: str = ""
    made_at: float = 0.0
    note: str = ""


class Estimator(Protocol):
    """Forecasts a run of ``spec`` for ``task`` (async: it may read the profiles)."""

    async def estimate(
        self,
        spec: WorkflowSpec,
        task: str,
        agents: Mapping[str, AgentDefinition],
        *,
        inputs: Mapping[str, Any] | None = None,
    ) -> RunForecast: ...


def confirm_threshold(settings: Settings) -> float | None:
    """``[budget] confirm_above_usd`` from ``.stageflow/config.toml`` (None: not set).

    A mistake raises ``SpecError`` naming the file and the key, so a threshold meant to guard
    spending is never silently ignored.
    """
    section = settings.extra.get("budget")
    if section is None:
        return None
    file = str(settings.config_file)
    if not isinstance(section, dict):
        raise SpecError(Problem("must be a table", file=file, path="budget"))
    unknown = sorted(k for k in section if k != "confirm_above_usd")
    if unknown:
        raise SpecError(
            Problem(
                "unknown key; expected confirm_above_usd", file=file, path=f"budget.{unknown[0]}"
            )
        )
    value = section.get("confirm_above_usd")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise SpecError(
            Problem(
                f"must be a non-negative number of USD, got {value!r}",
                file=file,
                path="budget.confirm_above_usd",
            )
        )
    return float(value)


def needs_confirmation(forecast: RunForecast | None, threshold: float | None) -> bool:
    """A run needs a human's confirmation when its p90 is above the threshold, or when a
    threshold is set and the forecast cannot be compared with it: none at all, a p90 that is
    not a finite number, or a stage whose model has no price (its cost is unknown)."""
    if threshold is None:
        return False
    if forecast is None or any(s.basis == "unpriced" for s in forecast.stages):
        return True
    return not (math.isfinite(forecast.p90_usd) and forecast.p90_usd <= threshold)


def confirmation_decided(
    run_id: str,
    stage: str | None,
    decision: Literal["approve", "reject"],
    feedback: str | None,
    approver: str,
    via: str,
    by_person: bool,
) -> ev.ConfirmationDecided:
    """The decision on a run waiting for its cost confirmation; ``InvalidState`` when it names
    a stage, or when it approves without a person behind it (``by_person``: the terminal, the
    dashboard or the MCP client asking the user, never the assistant's own call)."""
    if stage not in (None, CONFIRM_GATE):
        raise InvalidState(
            f"run {run_id} waits for a human to confirm its cost forecast before any stage "
            f"runs; decide that first (stage '{CONFIRM_GATE}' or none)"
        )
    if decision == "approve" and not by_person:
        raise InvalidState(
            f"run {run_id}'s cost confirmation takes a person's decision (the terminal, the "
            f"dashboard or the MCP client asking the user), not a {via} call: ask the user "
            f"to run `stageflow approve {run_id}`"
        )
    return ev.ConfirmationDecided(decision=decision, feedback=feedback, approver=approver, via=via)


class StageCheck(Model):
    stage: str
    p50_usd: float
    p90_usd: float
    actual_usd: float


class ForecastCheck(Model):
    # the forecast against what the run has spent so far (status shows it); ``verdict``: under
    # p50, between p50 and p90, or above p90. No docstring: it goes into workflow_status's
    # output schema, which every client lists.
    p50_usd: float
    p90_usd: float
    spent_usd: float
    verdict: str
    stages: list[StageCheck] = Field(default_factory=list)


def forecast_check(
    data: dict[str, Any] | None, *, spent_usd: float, stage_costs: Mapping[str, float]
) -> ForecastCheck | None:
    """``data`` (a stored ``RunForecast``) compared with the spend, per stage and in all."""
    if data is None:
        return None
    try:
        fc = RunForecast.model_validate(data)
    except ValueError:
        return None  # a forecast this version cannot read is not shown rather than fatal
    if spent_usd <= fc.p50_usd:
        verdict = "under p50"
    elif spent_usd <= fc.p90_usd:
        verdict = "between p50 and p90"
    else:
        verdict = "above p90"
    return ForecastCheck(
        p50_usd=fc.p50_usd,
        p90_usd=fc.p90_usd,
        spent_usd=round(spent_usd, 6),
        verdict=verdict,
        stages=[
            StageCheck(
                stage=s.stage,
                p50_usd=s.p50_usd,
                p90_usd=s.p90_usd,
                actual_usd=round(stage_costs.get(s.stage, 0.0), 6),
            )
            for s in fc.stages
        ],
    )
