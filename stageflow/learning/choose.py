"""The decisions, as pure functions of the profiles: which candidate agent, which model.

**Agents** (``rank_agents``, ``pick_agent``): every candidate is scored with
``stageflow.learning.scoring`` on its executions of the task type (all models pooled); the
highest score wins, ties going to the template's order. When no candidate has executions of
the task type, the first candidate runs (the template's default). A candidate that already
failed in the stage is unavailable for its retries while another one is left. The ranking
takes any list of names, so a caller that leaves the agent open (a coordinator's work item) can
pass the whole registry.

**Models** (``model_options``, ``choose_model``, for ``model: auto``): each model of ``[learning]
models`` (and the agent's own) gets its expected success for this agent and task type
(``explore.expected_success``), expected and worst-case dollars per attempt, and whether it
fits the remaining budget. With no executions of any of them, the agent's default model runs.
Otherwise the cheapest model whose expected success clears ``success_threshold`` runs; when
none clears it, the one with the best expected success. Models that already failed in this
stage are passed over (a retry escalates), as are models whose worst case does not fit the
budget, unless nothing else is left. Then the bounded exploration (``stageflow.learning.
explore``) may try another model, never one whose worst case breaks the budget.

Worst case of one attempt: 1.5 x the most expensive attempt seen, once a model has
``explore.DROP_AFTER`` executions; before that, twice the prior's p90 (``priors``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stageflow.learning import scoring
from stageflow.learning.book import ProfileBook
from stageflow.learning.explore import (
    DROP_AFTER,
    SHARE_WINDOW,
    Arm,
    draw,
    dropped,
    expected_success,
    explore_gate,
)
from stageflow.learning.priors import P90_FACTOR, prior_cost
from stageflow.learning.stats import SUCCESS
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import ModelRoutes

__all__ = [
    "AgentScore",
    "ModelDecision",
    "ModelOption",
    "choose_model",
    "model_options",
    "pick_agent",
    "rank_agents",
]

WORST_OBSERVED_FACTOR = 1.5
WORST_PRIOR_FACTOR = 2.0


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@dataclass(frozen=True)
class AgentScore:
    """One candidate agent's score and its parts."""

    agent: str
    parts: scoring.Parts
    task_type: str

    @property
    def score(self) -> float:
        return self.parts.score

    def record(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "score": _r(self.score),
            "base": _r(self.parts.base),
            "expertise": _r(self.parts.expertise),
            "confidence": _r(self.parts.confidence),
            "executions": self.parts.executions,
        }


def rank_agents(
    book: ProfileBook,
    candidates: Sequence[str],
    task_types: Mapping[str, str],
    *,
    now: float,
    loads: Mapping[str, int] | None = None,
    available: Mapping[str, bool] | None = None,
) -> list[AgentScore]:
    """Every candidate's score for its task type, in the candidates' order."""
    out = []
    for name in candidates:
        tt = task_types[name]
        pooled = book.pooled(name, tt)
        parts = scoring.Parts(
            base=scoring.base(
                available=(available or {}).get(name, True), load=(loads or {}).get(name, 0)
            ),
            expertise=scoring.expertise(((s.at, s.result == SUCCESS) for s in pooled), now),
            confidence=scoring.confidence(len(pooled)),
            executions=len(pooled),
        )
        out.append(AgentScore(name, parts, tt))
    return out


def pick_agent(scores: Sequence[AgentScore]) -> tuple[AgentScore, str]:
    """The candidate to run and the rule that chose it."""
    runnable = [s for s in scores if s.parts.base > 0] or list(scores)
    if all(s.parts.executions == 0 for s in runnable):
        if runnable[0] is not scores[0]:
            return runnable[0], "the first candidate that has not failed here"
        return runnable[0], "no history for the task type: the first candidate"
    best = max(runnable, key=lambda s: (round(s.score, 9), -scores.index(s)))
    return best, "the highest score"


@dataclass(frozen=True)
class ModelOption:
    """One model ``auto`` may choose, as the profiles see it for an agent and task type."""

    name: str  # as it will be asked for (an alias, or an id)
    model_id: str
    n: int
    rate: float | None  # recency-weighted success rate
    cost_usd: float  # expected dollars per attempt (history, else the prior)
    worst_usd: float | None  # None: cannot be estimated (an unpriced model without history)
    fits: bool  # the worst case fits the remaining budget
    failed_here: bool  # already failed in this stage
    dropped: bool
    expected: float

    def record(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "id": self.model_id,
            "executions": self.n,
            "success": _r(self.rate),
            "expected": _r(self.expected),
            "cost_usd": _r(self.cost_usd),
            "worst_usd": _r(self.worst_usd),
            "fits_budget": self.fits,
            "failed_here": self.failed_here,
            "dropped": self.dropped,
        }


def model_options(
    book: ProfileBook,
    agent: str,
    task_type: str,
    names: Sequence[str],
    *,
    routes: ModelRoutes,
    prices: PriceTable,
    threshold: float,
    now: float,
    remaining_usd: float | None = None,
    failed_here: frozenset[str] = frozenset(),
) -> list[ModelOption]:
    """The options for ``names`` (deduplicated by model id), cheapest first by the prior."""
    seen: dict[str, ModelOption] = {}
    for name in names:
        model_id = routes.resolve(name)
        if model_id in seen:
            continue
        samples = book.key(agent, task_type, model_id)
        n = len(samples)
        rate = scoring.expertise(((s.at, s.result == SUCCESS) for s in samples), now)
        prior = prior_cost(task_type, model_id, prices)
        cost = sum(s.cost_usd for s in samples) / n if n else (prior or 0.0)
        worst: float | None
        if n >= DROP_AFTER:
            worst = WORST_OBSERVED_FACTOR * max(s.cost_usd for s in samples)
        else:
            worst = None if prior is None else WORST_PRIOR_FACTOR * P90_FACTOR * prior
        fits = remaining_usd is None or (worst is not None and worst <= remaining_usd)
        seen[model_id] = ModelOption(
            name=name,
            model_id=model_id,
            n=n,
            rate=rate,
            cost_usd=cost,
            worst_usd=worst,
            fits=fits,
            failed_here=model_id in failed_here,
            dropped=dropped(rate, n, threshold),
            expected=expected_success(rate, n),
        )

    def price(o: ModelOption) -> float:
        p = prior_cost(task_type, o.model_id, prices)
        return float("inf") if p is None else p

    return sorted(seen.values(), key=lambda o: (price(o), names.index(o.name)))


@dataclass(frozen=True)
class ModelDecision:
    """The chosen option, the rule, and what exploration saw."""

    chosen: ModelOption
    rule: str
    explored: bool = False
    explored_share: float = 0.0
    draws: dict[str, float] = field(default_factory=dict)


def choose_model(
    options: Sequence[ModelOption],
    *,
    default: str,
    threshold: float,
    explore_share: float,
    rng: random.Random | None,
    explored_history: Sequence[bool] = (),
) -> ModelDecision:
    """The model for one attempt (see the module docstring). ``default`` is the model id the
    agent asks for without history; ``rng`` None: no exploration (a forecast asks what would
    normally run)."""
    by_name = {o.name: o for o in options}
    default_option = next((o for o in options if o.model_id == default), options[0])
    if all(o.n == 0 for o in options):
        if not default_option.failed_here:
            return ModelDecision(default_option, "no history for the task type: the default")
        up = [o for o in options if options.index(o) > options.index(default_option)]
        nxt = next((o for o in up if not o.failed_here and o.fits), None)
        if nxt is None:
            return ModelDecision(default_option, "no history; nothing above the default left")
        return ModelDecision(nxt, "no history; the default failed here: the next model up")
    eligible = (
        [o for o in options if o.fits and not o.failed_here]
        or [o for o in options if o.fits]
        or list(options)
    )
    clear = [o for o in eligible if o.expected >= threshold]
    if clear:
        exploit, rule = clear[0], "the cheapest model clearing the success threshold"
    else:
        exploit = max(eligible, key=lambda o: (o.expected, -eligible.index(o)))
        rule = "none clears the success threshold: the best expected success"
    if rng is None:
        return ModelDecision(exploit, rule)
    go, seen = explore_gate(rng, explore_share, list(explored_history)[-SHARE_WINDOW:])
    arms = [o for o in eligible if o.fits and not o.dropped and not o.failed_here]
    if not go or len(arms) < 2:
        return ModelDecision(exploit, rule, explored_share=seen)
    pick, draws = draw(rng, [Arm(o.name, o.rate, o.n, o.cost_usd) for o in arms])
    if pick == exploit.name:
        return ModelDecision(exploit, rule, explored_share=seen, draws=draws)
    return ModelDecision(by_name[pick], "explore", True, seen, draws)
