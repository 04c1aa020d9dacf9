"""``workflow_start``'s forecast answers: a dry run (the forecast, nothing started) and a run
created waiting for the human to confirm its forecast (``[budget] confirm_above_usd``)."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult

from stageflow.engine.forecasts import RunForecast
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.tools.errors import tool_errors
from stageflow.tools.models import ForecastBrief, StartResult
from stageflow.tools.results import tool_result

__all__ = ["dry_run_result", "waits_for_confirmation"]


def _money(fc: RunForecast | None) -> str:
    return f"${fc.p50_usd:.2f} (p50) to ${fc.p90_usd:.2f} (p90)" if fc else "no forecast"


async def dry_run_result(
    service: Service, template: str, task: str, inputs: dict[str, Any] | None, runner: str
) -> CallToolResult:
    """``workflow_start(dry_run=true)``: the forecast of a run, with nothing started."""
    with tool_errors():
        fc = await service.estimate(template, task, inputs=inputs)
    result = StartResult(
        template=fc.template,
        status="dry_run",
        runner=runner,
        stages=[s.stage for s in fc.stages],
        next_action=(
            "show the human the forecast; to start the run call workflow_start again without "
            "dry_run"
        ),
        forecast=ForecastBrief.of(fc) if fc is not None else None,
    )
    lines = [
        f"  {s.stage}: ${s.p50_usd:.4f} p50, ${s.p90_usd:.4f} p90 ({s.basis})" for s in fc.stages
    ]
    summary = (
        f"Forecast of {fc.template}: {_money(fc)}; {fc.expected_stages:.1f} stages, "
        f"{fc.expected_reworks:.2f} reworks expected. Nothing was started.\n" + "\n".join(lines)
    )
    return tool_result(result, summary)


def waits_for_confirmation(state: RunState, fc: RunForecast | None, runner: str) -> CallToolResult:
    """A run created waiting for the human to confirm its forecast: what to ask them."""
    limit = f"${state.confirm_above_usd:.2f}" if state.confirm_above_usd is not None else "?"
    confirm = f"{_money(fc)} is above the project's confirm_above_usd {limit}"
    result = StartResult(
        run_id=state.run_id,
        template=state.template,
        status=state.status,
        runner=runner,
        stages=[s.id for s in state.spec.stages],
        next_action=(
            f"nothing runs yet: the human must confirm spending {_money(fc)}. Call "
            f"workflow_approve(run_id='{state.run_id}', decision='approve') and the server asks "
            "them directly; or decision='reject' with their reason (the run is cancelled). "
            "Never decide yourself."
        ),
        forecast=ForecastBrief.of(fc) if fc is not None else None,
        confirm=confirm,
    )
    summary = f"Run {state.run_id} waits for the human: {confirm}.\nNext: {result.next_action}"
    return tool_result(result, summary)
