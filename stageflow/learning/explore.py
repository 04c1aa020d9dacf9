"""Bounded exploration for ``model: auto``: Thompson sampling over success per dollar.

Choosing only the cheapest model that clears the threshold would never learn that a cheaper
one became good enough, nor give a model without history a chance. So, for a share of the
attempts, the choice is explored:

- **Gate**: an attempt explores with probability ``explore_share``, and never while the share
  of explored attempts among the agent's last ``SHARE_WINDOW`` attempts of the task type has
  reached ``explore_share`` (the bound, shown in the choice record and in ``profiles``).
- **Draw**: each model's success rate is drawn from ``Beta(1 + n*p, 1 + n*(1 - p))`` (``p`` the
  recency-weighted success rate over ``n`` executions), divided by its expected dollars per
  attempt; the best draw wins. A cheap model with little history draws high, so it is tried.
- **Drop**: a model with at least ``DROP_AFTER`` executions whose 95% Wilson upper bound on
  success is below the threshold is not explored any more (recency decay lets it back in once
  its failures are old). A model whose worst case does not fit the remaining budget is never
  explored.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DROP_AFTER",
    "SHARE_WINDOW",
    "Arm",
    "draw",
    "dropped",
    "expected_success",
    "explore_gate",
    "wilson_upper",
]

DROP_AFTER = 3  # executions before a failing model may be dropped
SHARE_WINDOW = 50  # recent attempts the exploration share is measured over
Z95 = 1.6448536269514722  # one-sided 95%


def expected_success(rate: float | None, n: int) -> float:
    """Laplace-smoothed success: ``(n * rate + 1) / (n + 2)`` (0.5 without executions)."""
    if rate is None or n <= 0:
        return 0.5
    return (n * rate + 1.0) / (n + 2.0)


def wilson_upper(rate: float, n: int, z: float = Z95) -> float:
    """The Wilson score interval's upper bound on a success rate seen over ``n`` trials."""
    if n <= 0:
        return 1.0
    z2 = z * z
    centre = rate + z2 / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


def dropped(rate: float | None, n: int, threshold: float) -> bool:
    """A model that keeps failing for this agent and task type: no more exploration of it."""
    return rate is not None and n >= DROP_AFTER and wilson_upper(rate, n) < threshold


@dataclass(frozen=True)
class Arm:
    """One model as exploration sees it."""

    name: str
    rate: float | None  # recency-weighted success rate (None: no executions)
    n: int
    cost_usd: float  # expected dollars per attempt


def explore_gate(rng: random.Random, share: float, explored: Sequence[bool]) -> tuple[bool, float]:
    """Whether this attempt explores, and the explored share of the recent attempts."""
    recent = list(explored)[-SHARE_WINDOW:]
    seen = sum(recent) / len(recent) if recent else 0.0
    if share <= 0 or seen >= share:
        return False, seen
    return rng.random() < share, seen


def draw(rng: random.Random, arms: Sequence[Arm]) -> tuple[str, dict[str, float]]:
    """Thompson sampling over success per dollar: the winning model and every arm's draw."""
    values: dict[str, float] = {}
    for arm in arms:
        rate = 0.5 if arm.rate is None else arm.rate
        theta = rng.betavariate(1.0 + arm.n * rate, 1.0 + arm.n * (1.0 - rate))
        values[arm.name] = theta / max(arm.cost_usd, 1e-9)
    best = max(arms, key=lambda a: (values[a.name], -a.cost_usd))
    return best.name, {k: round(v, 4) for k, v in values.items()}
