"""Summaries of samples: percentiles, and the ``profiles`` row of one agent x task type x model.

Percentiles are nearest-rank (the smallest value with at least the share of values at or below
it), so a p90 is always a cost that was really seen. Sums run over samples in a fixed order and
are rounded, so the incremental table and a rebuild from the logs agree to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stageflow.store.profiles import ProfileRow, SampleRow

__all__ = ["FAILURE", "REWORK", "SUCCESS", "aggregate", "percentile"]

SUCCESS, REWORK, FAILURE = "success", "rework", "failure"
_DIGITS = 10


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank ``share`` percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def _mean(values: Sequence[float]) -> float:
    return round(math.fsum(values) / len(values), _DIGITS) if values else 0.0


def aggregate(samples: Sequence[SampleRow]) -> ProfileRow:
    """The profile row of one key's samples (all of the same agent, task type and model)."""
    first = samples[0]
    tokens = [float(s.tokens) for s in samples]
    costs = [s.cost_usd for s in samples]
    return ProfileRow(
        agent=first.agent,
        task_type=first.task_type,
        model=first.model,
        executions=len(samples),
        successes=sum(1 for s in samples if s.result == SUCCESS),
        reworks=sum(1 for s in samples if s.result == REWORK),
        failures=sum(1 for s in samples if s.result == FAILURE),
        tokens_mean=_mean(tokens),
        tokens_p90=percentile(tokens, 0.9),
        cost_mean_usd=_mean(costs),
        cost_p90_usd=round(percentile(costs, 0.9), _DIGITS),
        duration_mean_s=_mean([s.duration_s for s in samples]),
        last_at=max(s.at for s in samples),
    )
