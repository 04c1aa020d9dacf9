"""A run's cost before it starts: p50 and p90 per stage and for the run, from the profiles.

For each stage the forecast asks what would run (``chooser.plan_choice`` without exploration:
the agent the profiles rank first, the model ``auto`` would pick) and takes the cost of one
attempt from, in order:

1. **history**: this stage of this template on that agent and model (its last
   ``WINDOW`` attempts, at least ``MIN_SAMPLES``);
2. **profile**: the agent x task type x model elsewhere (same bounds);
3. **prior**: ``priors.TOKENS`` for the task type x the dated price table, log-normal.

From the same samples come the chances that an attempt fails (and is retried, if the stage's
``on_failure`` retries) and that an approval sends it back for rework (up to its
``max_rework``); a stage's chance to run comes from how often it ran in past runs of the
template (``priors`` for ``when`` and ``gate`` stages until there are ``MIN_SAMPLES`` runs).
Then ``SIMULATIONS`` runs are simulated (history resampled, priors drawn; seeded by template and
task, so the same question gets the same answer) and the percentiles read off the totals: a
run's p90 is the 90th percentile of whole runs, not a sum of stage p90s. Expected stages and
expected reworks are part of the result.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.forecasts import Basis, RunForecast, StageForecast
from stageflow.learning import priors
from stageflow.learning.book import BookCache, ProfileBook
from stageflow.learning.chooser import plan_choice
from stageflow.learning.config import LearningConfig
from stageflow.learning.stats import FAILURE, REWORK, percentile
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import ModelRoutes
from stageflow.store.profiles import SampleRow
from stageflow.workflows.spec import StageSpec, WorkflowSpec

__all__ = ["MIN_SAMPLES", "SIMULATIONS", "WINDOW", "LearnedEstimator", "forecast"]

MIN_SAMPLES = 3
WINDOW = 50
SIMULATIONS = 2000
MAX_DRAWS = 400_000  # stage draws per forecast: fewer simulations for very long templates


@dataclass(frozen=True)
class _Stage:
    """What the simulation needs of one stage."""

    out: StageForecast  # identity and basis (figures filled in after the simulation)
    runs: float
    fail: float  # an attempt fails
    rework: float  # an approved-stage attempt is sent back
    retries: int  # attempts a failure may take (1: no retry)
    max_rework: int
    draw: Callable[[random.Random], float]


def _draw_from(costs: Sequence[float]) -> Callable[[random.Random], float]:
    pool = list(costs)
    return lambda rng: rng.choice(pool)


def _draw_prior(median: float) -> Callable[[random.Random], float]:
    s = priors.sigma()
    return lambda rng: median * math.exp(rng.gauss(0.0, s))


def _rates(pool: Sequence[SampleRow]) -> tuple[float, float]:
    """(failure share, rework share of the delivered) of samples."""
    fails = sum(1 for s in pool if s.result == FAILURE)
    delivered = len(pool) - fails
    reworks = sum(1 for s in pool if s.result == REWORK)
    return fails / len(pool), (reworks / delivered if delivered else priors.REWORK)


def _runs(book: ProfileBook, spec: WorkflowSpec, stage: StageSpec) -> float:
    if stage.id in spec.rollback_targets():
        return 0.0
    past = book.runs(spec.name)
    if past >= MIN_SAMPLES:
        return book.stage_runs(spec.name, stage.id) / past
    if stage.when is not None:
        return priors.WHEN_RUNS
    if stage.gate is not None:
        return priors.GATE_RUNS
    return 1.0


def _plan_stage(
    book: ProfileBook,
    spec: WorkflowSpec,
    stage: StageSpec,
    task: str,
    agents: Mapping[str, AgentDefinition],
    config: LearningConfig,
    routes: ModelRoutes,
    prices: PriceTable,
    now: float,
) -> _Stage:
    runs = _runs(book, spec, stage)
    retries = stage.on_failure.max_attempts if stage.on_failure.action == "retry" else 1
    approval = stage.approval is not None and stage.approval.required
    candidates = {n: agents[n] for n in stage.agents if n in agents}
    if not candidates:  # a command stage: no model, no cost
        out = StageForecast(stage=stage.id, runs=runs, basis="none")
        return _Stage(out, runs, 0.0, 0.0, 1, 0, lambda _rng: 0.0)
    d = plan_choice(
        book,
        spec=spec,
        stage=stage,
        task=task,
        candidates=candidates,
        config=config,
        routes=routes,
        prices=prices,
        now=now,
    )
    history = [
        s for s in book.stage(spec.name, stage.id) if s.agent == d.agent and s.model == d.model_id
    ][-WINDOW:]
    profile = list(book.key(d.agent, d.task_type, d.model_id))[-WINDOW:]
    basis: Basis
    if len(history) >= MIN_SAMPLES:
        basis, pool = "history", history
    elif len(profile) >= MIN_SAMPLES:
        basis, pool = "profile", profile
    else:
        basis, pool = "prior", []
    if pool:
        fail, rework = _rates(pool)
        draw = _draw_from([s.cost_usd for s in pool])
    else:
        fail, rework = 1.0 - priors.SUCCESS, priors.REWORK
        prior = priors.prior_cost(d.task_type, d.model_id, prices)
        if prior is None:  # no price, no history: unknown (a set threshold then asks)
            basis = "unpriced"
        draw = _draw_prior(prior or 0.0)
    out = StageForecast(
        stage=stage.id,
        agent=d.agent,
        model=d.model,
        task_type=d.task_type,
        runs=runs,
        basis=basis,
        samples=len(pool),
    )
    return _Stage(out, runs, fail, rework if approval else 0.0, retries, stage.max_rework, draw)


def _simulate_stage(st: _Stage, rng: random.Random) -> tuple[float, int, int]:
    """One simulated run of a stage: (cost, attempts, reworks)."""
    cost, attempts, reworks = 0.0, 0, 0
    while True:
        for _ in range(st.retries):
            cost += st.draw(rng)
            attempts += 1
            if rng.random() >= st.fail:
                break
        else:
            return cost, attempts, reworks  # failed for good (the run would stop here)
        if reworks < st.max_rework and rng.random() < st.rework:
            reworks += 1
            continue
        return cost, attempts, reworks


def forecast(
    book: ProfileBook,
    spec: WorkflowSpec,
    task: str,
    agents: Mapping[str, AgentDefinition],
    *,
    config: LearningConfig,
    routes: ModelRoutes,
    prices: PriceTable,
    now: float,
) -> RunForecast:
    """The forecast of a run of ``spec`` for ``task`` (see the module docstring)."""
    stages = [
        _plan_stage(book, spec, s, task, agents, config, routes, prices, now) for s in spec.stages
    ]
    n = max(200, min(SIMULATIONS, MAX_DRAWS // max(1, len(stages))))
    rng = random.Random(f"{spec.name}\n{task}")
    totals: list[float] = []
    per: list[list[float]] = [[] for _ in stages]
    attempts = [0] * len(stages)
    reworks = [0] * len(stages)
    for _ in range(n):
        total = 0.0
        for i, st in enumerate(stages):
            if st.runs <= 0 or (st.runs < 1 and rng.random() >= st.runs):
                continue
            cost, a, r = _simulate_stage(st, rng)
            per[i].append(cost)
            attempts[i] += a
            reworks[i] += r
            total += cost
        totals.append(total)
    outs = []
    for i, st in enumerate(stages):
        ran = len(per[i])
        outs.append(
            st.out.model_copy(
                update={
                    "p50_usd": round(percentile(per[i], 0.5), 6),
                    "p90_usd": round(percentile(per[i], 0.9), 6),
                    "attempts": round(attempts[i] / ran, 3) if ran else 0.0,
                    "reworks": round(reworks[i] / ran, 3) if ran else 0.0,
                }
            )
        )
    counts = {
        b: sum(1 for o in outs if o.basis == b) for b in ("history", "profile", "prior", "unpriced")
    }
    note = ", ".join(f"{k} stage(s) from {b}" for b, k in counts.items() if k)
    return RunForecast(
        template=spec.name,
        p50_usd=round(percentile(totals, 0.5), 6),
        p90_usd=round(percentile(totals, 0.9), 6),
        mean_usd=round(math.fsum(totals) / len(totals), 6),
        expected_stages=round(sum(o.runs for o in outs), 3),
        expected_reworks=round(sum(o.runs * o.reworks for o in outs), 3),
        stages=outs,
        prices_as_of=prices.as_of,
        made_at=now,
        note=note or "no agent stages",
    )


class LearnedEstimator:
    """The engine's ``Estimator`` over this process's profiles."""

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

    async def estimate(
        self,
        spec: WorkflowSpec,
        task: str,
        agents: Mapping[str, AgentDefinition],
        *,
        inputs: Mapping[str, Any] | None = None,
    ) -> RunForecast:
        """Forecast with the current profiles (reloaded when another process wrote)."""
        book = await self.cache.refresh()
        return forecast(
            book,
            spec,
            task,
            agents,
            config=self.config,
            routes=self.routes,
            prices=self.prices,
            now=self.clock(),
        )
