"""Plans as the engine sees them. Pure: no I/O, no awaits.

- ``plan_limits``: what a plan stage's plan may contain (max items, the agents items may name,
  the cost of one item), from the plan stage and the ``for_each`` stage that expands it;
- ``checked_plan``: the engine's own check of a plan a runner returned (it never trusts one);
- ``expansion``: the planner's decision for a ready ``for_each`` stage: expand it, skip it,
  fail it (no valid plan) or pause the run (the plan no longer fits the budget);
- ``needed_refs``: the artifacts an attempt receives, with ``needs`` of a for_each stage's
  artifact meaning that artifact of every item, an item's dependencies' artifacts, and on a
  rework the artifacts of the stage that asked for it.
"""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.records import RunState
from stageflow.workflows.plan import PlanItem, PlanLimits, check_plan
from stageflow.workflows.spec import StageSpec


def for_each_of(state: RunState, plan_stage: str) -> StageSpec | None:
    """The template stage expanding ``plan_stage``'s plan, if any."""
    return next((s for s in state.spec.stages if s.for_each == plan_stage), None)


def plan_limits(state: RunState, plan_stage: str) -> PlanLimits | None:
    """The limits of ``plan_stage``'s plan; None when it is not a plan stage."""
    rules = state.stage_spec(plan_stage).plan
    if rules is None:
        return None
    target = for_each_of(state, plan_stage)
    default = target.agent if target is not None else None
    agents = tuple(dict.fromkeys([*([default] if default else []), *rules.agents]))
    item_usd = rules.item_budget_usd
    if item_usd is None and target is not None:
        item_usd = target.budget_usd
        if item_usd is None and default in state.agents:
            item_usd = state.agents[default].budget_usd
    return PlanLimits(
        max_items=rules.max_items,
        agents=agents,
        default_agent=default,
        item_usd=item_usd,
        models=tuple(rules.models),
    )


def remaining_usd(state: RunState, also_spent: float = 0.0) -> float | None:
    """What the run's budget still allows (None: no run budget)."""
    if state.budget_usd is None:
        return None
    return max(0.0, round(state.budget_usd - state.spent_usd - also_spent, 10))


def checked_plan(
    state: RunState, plan_stage: str, raw: object, *, also_spent: float = 0.0
) -> tuple[PlanItem, ...] | list[str]:
    """``raw`` checked against ``plan_stage``'s limits and the budget left."""
    limits = plan_limits(state, plan_stage)
    if limits is None:
        return [f"stage '{plan_stage}' is not a plan stage"]
    return check_plan(raw, limits, remaining_usd=remaining_usd(state, also_spent))


def expansion(state: RunState, spec: StageSpec) -> list[ev.Event]:
    """The decision for a ready ``for_each`` stage ``spec``."""
    assert spec.for_each is not None
    source = state.stages[spec.for_each]
    if source.status == "skipped":
        return [ev.StageSkipped(stage=spec.id, reason=f"plan stage '{spec.for_each}' was skipped")]
    if source.plan is None:
        why = f"plan stage '{spec.for_each}' returned no plan ({source.status})"
        return [ev.StageFailed(stage=spec.id, reason=why)]
    raw = {"items": list(source.plan)}
    limits = plan_limits(state, spec.for_each)
    assert limits is not None
    shape = check_plan(raw, limits)
    if isinstance(shape, list):  # the log was written by a runner that skipped the check
        return [ev.StageFailed(stage=spec.id, reason="plan refused: " + "; ".join(shape))]
    fits = check_plan(raw, limits, remaining_usd=remaining_usd(state))
    if isinstance(fits, list):  # spent elsewhere since the plan was made
        if state.paused:
            return []
        reason = f"stage '{spec.id}' not expanded: {'; '.join(fits)}; resume with a higher budget"
        return [ev.RunPaused(reason=reason, by="engine", budget_exceeded=True)]
    taken = [f"{spec.id}.{i.id}" for i in fits if f"{spec.id}.{i.id}" in state.stages]
    if taken:  # never two stages under one id (a decision agent's, say)
        why = f"plan refused: item stage(s) {', '.join(taken)} already exist in this run"
        return [ev.StageFailed(stage=spec.id, reason=why)]
    items = [i.model_dump(mode="json") for i in fits]
    return [ev.PlanExpanded(stage=spec.id, source=spec.for_each, items=items)]


def needed_refs(state: RunState, stage: str) -> list[tuple[str, str]]:
    """(stage, artifact) pairs an attempt of ``stage`` receives, in order, existing or not."""
    spec = state.stage_spec(stage)
    out: list[tuple[str, str]] = []
    for src, name in spec.needed():
        items = state.children.get(src)
        if items:
            out += [(i, name) for i in items]
        else:
            out.append((src, name))
    if stage in state.parent_of:  # an item: what the items it builds on produced
        for dep in spec.depends_on:
            out += [(dep, n) for n in state.stage_spec(dep).produces]
    st = state.stages[stage]
    if st.feedback is not None and st.feedback_from in state.stages:
        source = st.feedback_from
        out += [(source, n) for n in state.stages[source].artifacts]
    return list(dict.fromkeys(out))
