"""Learned model routing vs fixed models, on a simulated history with hidden success rates.

Each simulated task is one stage of a task type (feature, bugfix, test, docs, design, review,
...) that may take two attempts (``on_failure: retry``). Whether an attempt succeeds is drawn
from a hidden success rate per model and task type (``HIDDEN``); what it costs is the prior
tokens of its task type (``stageflow.learning.priors``) at the dated price table, with
log-normal noise. Four policies see the same tasks and the same random draws:

- ``always-opus``, ``always-haiku``: every attempt on that model;
- ``static defaults``: the model of the built-in agent for the task type (architect opus,
  developer sonnet, documenter haiku, ...), read from the agent files;
- ``oracle``: the cheapest model whose *hidden* rate clears the success threshold, per task
  type; what learning aims at, shown as the ceiling (no real policy can know the rates);
- ``learned (auto)``: ``model: auto`` as the engine runs it: ``choose_model`` over
  ``model_options`` of a ``ProfileBook`` that takes each finished attempt in (recency weights,
  the success threshold, escalation past the model that failed in the stage, the bounded
  Thompson-sampling exploration and the drop rule). It starts with no history at all.

Printed per policy: stage success rate, dollars per successful stage, and both against
always-opus (cost ratio, success difference in points), plus the learned policy's explored
share. The goal of issue 13: learned routing at least 40% cheaper than always-opus per
successful stage, with success within 2 points of it.

    python benchmarks/routing.py                  # 3000 tasks, seed 7
    python benchmarks/routing.py --tasks 500 --seed 3
    python benchmarks/routing.py --seed 1 --seeds 12  # and the spread over 12 seeds
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from stageflow.agents.registry import BUILTIN_AGENTS_DIR, load_agents
from stageflow.learning.book import ProfileBook
from stageflow.learning.choose import choose_model, model_options
from stageflow.learning.config import LearningConfig
from stageflow.learning.priors import prior_cost, sigma
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import DEFAULT_ALIASES, ModelRoutes
from stageflow.store.profiles import SampleRow

HAIKU, SONNET, OPUS = (DEFAULT_ALIASES[a] for a in ("haiku", "sonnet", "opus"))

# hidden per-attempt success rates: model -> task type -> rate (what routing must discover)
HIDDEN: dict[str, dict[str, float]] = {
    HAIKU: {"docs": 0.95, "test": 0.90, "review": 0.88, "release": 0.92, "bugfix": 0.62,
            "feature": 0.45, "refactor": 0.55, "design": 0.30, "investigate": 0.35},
    SONNET: {"docs": 0.97, "test": 0.95, "review": 0.94, "release": 0.96, "bugfix": 0.90,
             "feature": 0.88, "refactor": 0.90, "design": 0.74, "investigate": 0.78},
    OPUS: {"docs": 0.97, "test": 0.96, "review": 0.96, "release": 0.97, "bugfix": 0.94,
           "feature": 0.93, "refactor": 0.94, "design": 0.93, "investigate": 0.92},
}  # fmt: skip
# how often each task type comes up
MIX: dict[str, float] = {
    "feature": 0.25,
    "bugfix": 0.15,
    "test": 0.15,
    "review": 0.15,
    "docs": 0.10,
    "refactor": 0.06,
    "design": 0.06,
    "investigate": 0.04,
    "release": 0.04,
}
# the built-in agent that does each task type (its model is the static default)
AGENT_OF = {
    "feature": "developer",
    "bugfix": "developer",
    "refactor": "developer",
    "test": "tester",
    "review": "reviewer",
    "docs": "documenter",
    "design": "architect",
    "investigate": "investigator",
    "release": "release-manager",
}
ATTEMPTS = 2  # on_failure: retry, max_attempts 2
SPACING_S = 600.0  # a task every ten minutes: 3000 tasks span about three weeks
AGENT = "agent"  # one profile owner per task type; the model is what is routed


@dataclass
class Tally:
    name: str
    tasks: int = 0
    successes: int = 0
    cost: float = 0.0
    attempts: int = 0
    explored: int = 0
    by_model: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.successes / self.tasks if self.tasks else 0.0

    @property
    def per_success(self) -> float:
        return self.cost / self.successes if self.successes else math.inf


@dataclass(frozen=True)
class Task:
    index: int
    task_type: str
    luck: tuple[float, ...]  # one uniform draw per attempt: success iff below the rate
    noise: tuple[float, ...]  # one standard normal per attempt: the cost's spread


Policy = Callable[[Task, int, frozenset[str], float], tuple[str, bool]]  # -> model, explored


def make_tasks(n: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    return [
        Task(
            i,
            rng.choices(kinds, weights)[0],
            tuple(rng.random() for _ in range(ATTEMPTS)),
            tuple(rng.gauss(0.0, 1.0) for _ in range(ATTEMPTS)),
        )
        for i in range(n)
    ]


def attempt_cost(task_type: str, model: str, z: float, prices: PriceTable) -> float:
    median = prior_cost(task_type, model, prices)
    assert median is not None, model
    return median * math.exp(sigma() * z)


def static_defaults() -> dict[str, str]:
    """Task type -> the model id of its built-in agent (from the agent files)."""
    routes = ModelRoutes()
    agents = load_agents([("builtin", BUILTIN_AGENTS_DIR)])
    return {tt: routes.resolve(agents.get(name).model) for tt, name in AGENT_OF.items()}


def oracle_routes(threshold: float, prices: PriceTable) -> dict[str, str]:
    """Task type -> the cheapest model whose hidden rate clears the threshold: the routing
    learning aims at, knowing what it cannot know (a reference, not a policy)."""
    out = {}
    for tt in MIX:
        clear = [m for m in (HAIKU, SONNET, OPUS) if HIDDEN[m][tt] >= threshold]
        out[tt] = min(clear or [OPUS], key=lambda m: prior_cost(tt, m, prices) or math.inf)
    return out


def fixed(model_of: Callable[[str], str]) -> Policy:
    def choose(task: Task, attempt: int, failed: frozenset[str], now: float) -> tuple[str, bool]:
        return model_of(task.task_type), False

    return choose


class Learned:
    """``model: auto``: the choice the engine makes, over a book fed every finished attempt."""

    def __init__(self, config: LearningConfig, prices: PriceTable, seed: int) -> None:
        self.config, self.prices = config, prices
        self.routes = ModelRoutes()
        self.book = ProfileBook()
        self.rng = random.Random(seed)
        self.explored: list[bool] = []

    def __call__(
        self, task: Task, attempt: int, failed: frozenset[str], now: float
    ) -> tuple[str, bool]:
        options = model_options(
            self.book,
            AGENT,
            task.task_type,
            self.config.models,
            routes=self.routes,
            prices=self.prices,
            threshold=self.config.success_threshold,
            now=now,
            failed_here=failed,
        )
        history = [s.explored for s in self.book.pooled(AGENT, task.task_type)]
        decision = choose_model(
            options,
            default=SONNET,  # the agent's own model when there is no history
            threshold=self.config.success_threshold,
            explore_share=self.config.explore_share,
            rng=self.rng,
            explored_history=history,
        )
        return decision.chosen.model_id, decision.explored

    def learn(
        self, task: Task, attempt: int, model: str, ok: bool, cost: float, now: float, ex: bool
    ) -> None:
        self.book.add(
            [
                SampleRow(
                    run_id=f"task-{task.index}",
                    stage="s",
                    attempt=attempt,
                    template="sim",
                    agent=AGENT,
                    task_type=task.task_type,
                    model=model,
                    result="success" if ok else "failure",
                    tokens=0,
                    cost_usd=cost,
                    duration_s=0.0,
                    at=now,
                    explored=ex,
                )
            ]
        )


def simulate(name: str, policy: Policy, tasks: Sequence[Task], prices: PriceTable) -> Tally:
    tally = Tally(name)
    learner = policy if isinstance(policy, Learned) else None
    for task in tasks:
        now = 1_900_000_000.0 + task.index * SPACING_S
        failed: set[str] = set()
        tally.tasks += 1
        for attempt in range(ATTEMPTS):
            model, explored = policy(task, attempt + 1, frozenset(failed), now)
            cost = attempt_cost(task.task_type, model, task.noise[attempt], prices)
            ok = task.luck[attempt] < HIDDEN[model][task.task_type]
            tally.cost += cost
            tally.attempts += 1
            tally.explored += explored
            tally.by_model[model] = tally.by_model.get(model, 0) + 1
            if learner is not None:
                learner.learn(task, attempt + 1, model, ok, cost, now + attempt, explored)
            if ok:
                tally.successes += 1
                break
            failed.add(model)
    return tally


def run(tasks: int, seed: int) -> list[Tally]:
    prices = PriceTable()
    work = make_tasks(tasks, seed)
    defaults = static_defaults()
    config = LearningConfig()
    oracle = oracle_routes(config.success_threshold, prices)
    policies: list[tuple[str, Policy]] = [
        ("always-opus", fixed(lambda _t: OPUS)),
        ("static defaults", fixed(lambda t: defaults[t])),
        ("always-haiku", fixed(lambda _t: HAIKU)),
        ("oracle", fixed(lambda t: oracle[t])),
        ("learned (auto)", Learned(config, prices, seed)),
    ]
    return [simulate(name, p, work, prices) for name, p in policies]


def render(tallies: Sequence[Tally], out: TextIO) -> None:
    opus = tallies[0]
    out.write(
        f"{'policy':<16} {'success':>8} {'$/success':>10} {'cost vs opus':>13} "
        f"{'success vs opus':>16} {'explored':>9}  attempts by model\n"
    )
    for t in tallies:
        ratio = t.per_success / opus.per_success
        diff = 100 * (t.success_rate - opus.success_rate)
        share = t.explored / t.attempts if t.attempts else 0.0
        models = ", ".join(
            f"{m.split('-')[1]} {n}" for m, n in sorted(t.by_model.items(), key=lambda x: -x[1])
        )
        out.write(
            f"{t.name:<16} {t.success_rate:>8.1%} {t.per_success:>10.4f} {ratio:>12.2f}x "
            f"{diff:>+15.1f}pt {share:>9.1%}  {models}\n"
        )
    learned = tallies[-1]
    saving = 1 - learned.per_success / opus.per_success
    diff = 100 * (learned.success_rate - opus.success_rate)
    met = saving >= 0.40 and diff >= -2.0
    out.write(
        f"learned vs always-opus: {saving:.0%} cheaper per successful stage, success "
        f"{diff:+.1f} points (goal: >= 40% cheaper, within 2 points): "
        f"{'met' if met else 'NOT met'}\n"
    )


def summary(seeds: Sequence[int], tasks: int, out: TextIO) -> None:
    """The learned policy against always-opus over several seeds: mean, worst and best."""
    savings, diffs = [], []
    for seed in seeds:
        tallies = run(tasks, seed)
        opus, learned = tallies[0], tallies[-1]
        savings.append(1 - learned.per_success / opus.per_success)
        diffs.append(100 * (learned.success_rate - opus.success_rate))
        out.write(f"  seed {seed:>3}: {savings[-1]:.1%} cheaper, success {diffs[-1]:+.2f} points\n")
    out.write(
        f"over {len(seeds)} seeds: {sum(savings) / len(savings):.1%} cheaper per successful "
        f"stage (worst {min(savings):.1%}, best {max(savings):.1%}); success "
        f"{sum(diffs) / len(diffs):+.2f} points (worst {min(diffs):+.2f})\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--tasks", type=int, default=3000, help="simulated tasks (3000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (7)")
    p.add_argument(
        "--seeds", type=int, default=0, help="also summarise this many seeds from --seed on"
    )
    args = p.parse_args(argv)
    out = sys.stdout
    out.write(f"{args.tasks} simulated tasks, seed {args.seed}, {ATTEMPTS} attempts each at most\n")
    render(run(args.tasks, args.seed), out)
    if args.seeds:
        summary(range(args.seed, args.seed + args.seeds), args.tasks, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
