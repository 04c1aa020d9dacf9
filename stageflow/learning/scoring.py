"""The ranking formula of the learning-profile design, in small pure functions.

- **Recency**: an execution's weight is ``3 x 2^(-age / 30 days)`` when it is at most 7 days
  old, ``2^(-age / 30 days)`` when older. Executions of the last week weigh three times what an
  older one of the same age would, and every weight halves every 30 days, so old history fades
  instead of dropping off a cliff.
- **Expertise**: the recency-weighted success rate for the task type,
  ``sum(w * success) / sum(w)``; none without executions.
- **Confidence**: ``min(1, executions / 20)`` (executions counted, not weighted).
- **Base**: the agent's availability and load: ``available / (1 + load)``, where ``available``
  is 1 when its definition is there to run (else 0) and ``load`` the attempts it is already
  running in the run.
- **Score**: ``0.3 x base + 0.5 x expertise + 0.2 x confidence``; an agent without executions
  counts with ``PRIOR_EXPERTISE`` (0.5) and confidence 0, so data earns its way up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BASE_WEIGHT",
    "CONFIDENCE_WEIGHT",
    "EXPERTISE_WEIGHT",
    "FULL_CONFIDENCE_AT",
    "HALF_LIFE_DAYS",
    "PRIOR_EXPERTISE",
    "RECENT_DAYS",
    "RECENT_FACTOR",
    "Parts",
    "base",
    "confidence",
    "expertise",
    "recency_weight",
    "score",
]

DAY = 86_400.0
RECENT_DAYS = 7.0
RECENT_FACTOR = 3.0
HALF_LIFE_DAYS = 30.0
FULL_CONFIDENCE_AT = 20  # executions
BASE_WEIGHT, EXPERTISE_WEIGHT, CONFIDENCE_WEIGHT = 0.3, 0.5, 0.2
PRIOR_EXPERTISE = 0.5


def recency_weight(age_s: float) -> float:
    """The weight of an execution ``age_s`` seconds old (a future one counts as new)."""
    age = max(0.0, age_s) / DAY
    decay: float = 2.0 ** (-age / HALF_LIFE_DAYS)
    return RECENT_FACTOR * decay if age <= RECENT_DAYS else decay


def expertise(executions: Iterable[tuple[float, bool]], now: float) -> float | None:
    """The recency-weighted success rate of ``(finished at, succeeded)`` pairs (None: none)."""
    total = wins = 0.0
    for at, ok in executions:
        w = recency_weight(now - at)
        total += w
        wins += w if ok else 0.0
    return wins / total if total > 0 else None


def confidence(executions: int) -> float:
    """``min(1, executions / 20)``."""
    return min(1.0, max(0, executions) / FULL_CONFIDENCE_AT)


def base(*, available: bool, load: int) -> float:
    """``available / (1 + load)``: 1.0 for an idle agent, 0 for one that cannot run."""
    return (1.0 if available else 0.0) / (1 + max(0, load))


@dataclass(frozen=True)
class Parts:
    """One agent's score and the three parts it is made of."""

    base: float
    expertise: float | None  # None: no executions (PRIOR_EXPERTISE is used in the score)
    confidence: float
    executions: int

    @property
    def score(self) -> float:
        return score(self.base, self.expertise, self.confidence)


def score(b: float, e: float | None, c: float) -> float:
    """``0.3 x base + 0.5 x expertise + 0.2 x confidence`` (no expertise: the prior)."""
    used = PRIOR_EXPERTISE if e is None else e
    return BASE_WEIGHT * b + EXPERTISE_WEIGHT * used + CONFIDENCE_WEIGHT * c
