"""``LearnedChooser``: the engine's ``Chooser`` backed by the profiles, and ``plan_choice``, the
decision for one stage that both the chooser (at an attempt's start) and the forecast (before a
run) make.

The record that goes on ``attempt_started`` carries the task type, every candidate agent's
score with its three parts, every model option with its expected success, costs and budget
fit, the rule that decided each, the exploration share, and ``why``: one line for status, e.g.
``developer on haiku: 0.82 success over 14 runs, confidence 0.70``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.choice import (
    AttemptChoice,
    ChoiceContext,
    default_model,
    is_auto,
)
from stageflow.engine.state import RunState
from stageflow.learning import scoring
from stageflow.learning.book import BookCache, ProfileBook
from stageflow.learning.choose import (
    ModelDecision,
    choose_model,
    model_options,
    pick_agent,
    rank_agents,
)
from stageflow.learning.config import LearningConfig
from stageflow.learning.tasktype import task_type_of
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import ModelRoutes
from stageflow.workflows.spec import StageSpec, WorkflowSpec

__all__ = ["Decided", "LearnedChooser", "plan_choice"]

_FAILED = ("failed", "timed_out")


@dataclass(frozen=True)
class Decided:
    """What ``plan_choice`` decided for one stage."""

    agent: str
    model: str  # as asked for
    model_id: str
    task_type: str
    record: dict[str, Any]
    explored: bool = False


def _why(agent: str, model: str, decision: ModelDecision | None, fixed: str | None) -> str:
    if decision is None:
        return f"{agent} on {model}: {fixed or 'the stage or agent names the model'}"
    o = decision.chosen
    if decision.explored:
        return (
            f"{agent} on {model}: exploring a cheaper or less known model ({o.n} runs so far; "
            f"{decision.explored_share:.0%} of recent attempts explored)"
        )
    if o.n == 0:
        return f"{agent} on {model}: no history for this task type yet ({decision.rule})"
    return (
        f"{agent} on {model}: {o.rate or 0.0:.2f} success over {o.n} runs, confidence "
        f"{scoring.confidence(o.n):.2f}"
    )


def plan_choice(
    book: ProfileBook,
    *,
    spec: WorkflowSpec,
    stage: StageSpec,
    task: str,
    candidates: Mapping[str, AgentDefinition],
    config: LearningConfig,
    routes: ModelRoutes,
    prices: PriceTable,
    now: float,
    loads: Mapping[str, int] | None = None,
    failed: Callable[[str], frozenset[str]] = lambda _agent: frozenset(),
    remaining_usd: float | None = None,
    rng: random.Random | None = None,
) -> Decided:
    """The agent and model for one attempt of ``stage`` (``rng`` None: no exploration).

    ``failed(agent)`` names the model ids that already failed in this stage for that agent; a
    candidate with such failures counts as unavailable (base 0) while another one is left, so
    a retry tries another candidate.
    """
    names = list(candidates)
    task_types = {n: task_type_of(spec, stage, n, task, candidates[n]) for n in names}
    record: dict[str, Any] = {}
    who = names[0]
    if len(names) > 1:
        tried = {n: not failed(n) for n in names}
        available = tried if any(tried.values()) else None
        scores = rank_agents(book, names, task_types, now=now, loads=loads, available=available)
        best, rule = pick_agent(scores)
        agent = best.agent
        record["agent"] = {
            "chosen": agent,
            "rule": rule,
            "candidates": [s.record() for s in scores],
        }
        if best.parts.executions:
            who = f"{agent} (score {best.score:.2f}, best of {len(names)})"
        else:
            who = f"{agent} (first of {len(names)}: no history)"
    else:
        agent = names[0]
    definition = candidates[agent]
    task_type = task_types[agent]
    record["task_type"] = task_type
    auto = is_auto(stage.model) or (stage.model is None and is_auto(definition.model))
    fallback = default_model(stage, definition)
    if not auto:
        record["model"] = {"chosen": fallback, "rule": "named by the stage or the agent"}
        record["why"] = _why(who, fallback, None, None)
        return Decided(agent, fallback, routes.resolve(fallback), task_type, record)
    default_id = routes.resolve(fallback)
    options = model_options(
        book,
        agent,
        task_type,
        [*config.models, fallback],
        routes=routes,
        prices=prices,
        threshold=config.success_threshold,
        now=now,
        remaining_usd=remaining_usd,
        failed_here=failed(agent),
    )
    decision = choose_model(
        options,
        default=default_id,
        threshold=config.success_threshold,
        explore_share=config.explore_share,
        rng=rng,
        explored_history=[s.explored for s in book.pooled(agent, task_type)],
    )
    chosen = decision.chosen
    record["model"] = {
        "chosen": chosen.name,
        "id": chosen.model_id,
        "rule": decision.rule,
        "threshold": config.success_threshold,
        "explore_share": config.explore_share,
        "explored_share": round(decision.explored_share, 4),
        "remaining_usd": None if remaining_usd is None else round(remaining_usd, 6),
        "options": [o.record() for o in options],
        **({"draws": decision.draws} if decision.draws else {}),
    }
    record["why"] = _why(who, chosen.name, decision, None)
    return Decided(agent, chosen.name, chosen.model_id, task_type, record, decision.explored)


class LearnedChooser:
    """The engine's ``Chooser`` over this process's profiles."""

    def __init__(
        self,
        cache: BookCache,
        config: LearningConfig,
        routes: ModelRoutes,
        prices: PriceTable,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.config = config
        self.routes = routes
        self.prices = prices
        self.clock = clock

    async def prepare(self) -> None:
        """Reload the profiles when another process changed them."""
        await self.cache.refresh()

    def choose(self, ctx: ChoiceContext) -> AttemptChoice:
        """Decide for one attempt; exploration is seeded by run, stage and attempt."""
        st = ctx.state
        rng = random.Random(f"{st.run_id}/{ctx.start.stage}/{ctx.start.attempt}")
        decided = plan_choice(
            self.cache.book,
            spec=st.spec,
            stage=ctx.stage,
            task=st.task,
            candidates=ctx.candidates,
            config=self.config,
            routes=self.routes,
            prices=self.prices,
            now=self.clock(),
            loads=_loads(st),
            failed=lambda agent: self._failed(st, ctx.stage.id, agent),
            remaining_usd=ctx.remaining_usd,
            rng=rng,
        )
        return AttemptChoice(agent=decided.agent, model=decided.model, record=decided.record)

    def _failed(self, st: RunState, stage: str, agent: str) -> frozenset[str]:
        out = set()
        for a in st.stages[stage].attempts:
            if a.agent == agent and a.outcome in _FAILED:
                out.add(a.model_resolved or self.routes.resolve(a.model_requested))
        return frozenset(out)


def _loads(st: RunState) -> dict[str, int]:
    """Attempts each agent is running in the run now."""
    out: dict[str, int] = {}
    for ss in st.stages.values():
        cur = ss.current
        if ss.status == "running" and cur is not None and cur.agent:
            out[cur.agent] = out.get(cur.agent, 0) + 1
    return out
