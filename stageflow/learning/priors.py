"""What a forecast assumes where the project has no history yet (documented guesses).

An attempt's tokens by task type (``TOKENS``: plain input, output, 5-minute cache writes and
cache reads of one API-runner attempt of about ten turns, whose conversation is re-read from the
prompt cache each turn), priced with the dated price table (``stageflow.models.pricing``) for
the model the attempt would ask for. The median attempt costs that much; the spread is
log-normal with ``P90_FACTOR`` between median and 90th percentile. An attempt succeeds with
``SUCCESS``, an approval is sent back for rework with ``REWORK``, a stage with a ``when``
condition runs with ``WHEN_RUNS`` and one with a ``gate`` with ``GATE_RUNS``; rollback stages
are not counted (they run only when something fails). These figures are orders of magnitude to
start from: after a few runs the forecast uses the project's own attempts instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stageflow.models.client import RawUsage
from stageflow.models.pricing import PriceTable

__all__ = [
    "GATE_RUNS",
    "P90_FACTOR",
    "REWORK",
    "SUCCESS",
    "TOKENS",
    "WHEN_RUNS",
    "PriorTokens",
    "prior_cost",
    "sigma",
]

PRIORS_AS_OF = "2026-11-21"
P90_FACTOR = 2.5
SUCCESS = 0.85
REWORK = 0.25
WHEN_RUNS = 0.5
GATE_RUNS = 0.9
_Z90 = 1.2815515655446004


@dataclass(frozen=True)
class PriorTokens:
    """The median tokens of one attempt."""

    input: int
    output: int
    cache_write: int
    cache_read: int

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_write + self.cache_read


_IMPLEMENT = PriorTokens(20_000, 12_000, 40_000, 350_000)
TOKENS: dict[str, PriorTokens] = {
    "design": PriorTokens(12_000, 6_000, 25_000, 120_000),
    "investigate": PriorTokens(15_000, 5_000, 30_000, 250_000),
    "test": PriorTokens(15_000, 8_000, 30_000, 250_000),
    "review": PriorTokens(12_000, 4_000, 25_000, 120_000),
    "docs": PriorTokens(10_000, 6_000, 20_000, 100_000),
    "security": PriorTokens(15_000, 6_000, 30_000, 200_000),
    "release": PriorTokens(8_000, 4_000, 15_000, 60_000),
    "feature": _IMPLEMENT,
    "bugfix": _IMPLEMENT,
    "refactor": _IMPLEMENT,
    "performance": _IMPLEMENT,
}


def tokens_for(task_type: str) -> PriorTokens:
    """The prior tokens of a task type (an unknown one counts as implementation work)."""
    return TOKENS.get(task_type, _IMPLEMENT)


def prior_cost(task_type: str, model_id: str, prices: PriceTable) -> float | None:
    """The median dollars of one attempt on ``model_id`` (None: the model has no price)."""
    t = tokens_for(task_type)
    usage = RawUsage(
        input_tokens=t.input,
        output_tokens=t.output,
        cache_write_5m_tokens=t.cache_write,
        cache_read_tokens=t.cache_read,
    )
    cost, priced = prices.cost(model_id, usage)
    return cost if priced else None


def sigma() -> float:
    """The log-normal spread that puts the 90th percentile at ``P90_FACTOR`` x the median."""
    return math.log(P90_FACTOR) / _Z90
