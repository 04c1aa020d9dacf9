"""What ``Service.start_run`` and ``Service.estimate`` share: a template made ready for a run
(its spec, the task, the resolved inputs and every agent the run may use), and its forecast."""

from __future__ import annotations

import logging
from typing import Any

from stageflow.agents.definition import AgentDefinition
from stageflow.agents.registry import AgentRegistry
from stageflow.engine.forecasts import Estimator, RunForecast
from stageflow.engine.gitstate import MERGE_AGENT
from stageflow.engine.lanes import plan_lanes
from stageflow.errors import InvalidArgument, InvalidState, NotFound, Problem, SpecErrors
from stageflow.workflows.catalog import TemplateCatalog
from stageflow.workflows.spec import WorkflowSpec

__all__ = ["estimate_run", "forecast_or_none", "prepare_run"]

log = logging.getLogger(__name__)


def prepare_run(
    agents: AgentRegistry,
    catalog: TemplateCatalog,
    template: str,
    task: str,
    inputs: dict[str, Any] | None,
) -> tuple[WorkflowSpec, str, dict[str, Any], dict[str, AgentDefinition]]:
    """The template's spec, the task, the resolved inputs and every agent the run may use
    (all candidates of every stage); raises on an unknown template or a bad input."""
    if not task or not task.strip():
        raise InvalidArgument("task must be a non-empty description of the work")
    entry = catalog.entries.get(template)
    if entry is None:
        raise NotFound("template", template, known=catalog.names())
    if entry.spec is None or entry.problems:
        raise SpecErrors(
            entry.problems or (Problem("template failed to load", file=str(entry.source)),)
        )
    spec = entry.spec
    try:
        resolved = spec.resolve_inputs({"task": task.strip(), **(inputs or {})})
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    names = {name for s in spec.stages for name in (*s.agents, *s.agent_names())}  # debaters
    for s in spec.stages:  # the agents plan items may name, and decision agents
        if s.plan is not None:
            names.update(s.plan.agents)
        if s.escalate is not None and s.escalate.agent:
            names.add(s.escalate.agent)
    used = {name: agents.get(name) for name in sorted(names)}
    # parallel writers may conflict at a join: the merge-resolver is then one of the run's
    isolated = plan_lanes(spec, used).isolated
    if isolated and MERGE_AGENT in agents.names() and MERGE_AGENT not in used:
        used[MERGE_AGENT] = agents.get(MERGE_AGENT)
    return spec, task.strip(), resolved, used


async def forecast_or_none(
    estimator: Estimator | None,
    spec: WorkflowSpec,
    task: str,
    used: dict[str, AgentDefinition],
    inputs: dict[str, Any],
) -> RunForecast | None:
    """The forecast, or None (logged) when there is no estimator or it fails: a set
    ``confirm_above_usd`` then asks for the confirmation anyway."""
    if estimator is None:
        return None
    try:
        return await estimator.estimate(spec, task, used, inputs=inputs)
    except Exception:
        log.warning("could not forecast a run of %s", spec.name, exc_info=True)
        return None


async def estimate_run(
    estimator: Estimator | None,
    agents: AgentRegistry,
    catalog: TemplateCatalog,
    template: str,
    task: str,
    inputs: dict[str, Any] | None,
) -> RunForecast:
    """``Service.estimate``: the forecast of a run that is not started; ``InvalidState``
    without an estimator (nothing to forecast with)."""
    spec, text, resolved, used = prepare_run(agents, catalog, template, task, inputs)
    if estimator is None:
        raise InvalidState("no cost forecasts here: this process has no learning profiles")
    return await estimator.estimate(spec, text, used, inputs=resolved)
