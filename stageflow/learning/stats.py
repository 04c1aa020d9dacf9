"""Summaries of samples: percentiles, and the ``profiles`` row of one agent x task type x model.

A sample the tables could hold but no reckoning should use (a cost or token count that is not
a finite non-negative number: a hostile or broken writer of ``state.db``, a provider reporting
nonsense) is left out by ``usable``, everywhere samples are read; a cost above
``MAX_ATTEMPT_USD`` counts as that much, so a huge cost keeps a forecast high rather than
overflowing its sums.

Percentiles are nearest-rank (the smallest value with at least the share of values at or below
it), so a p90 is always a cost that was really seen. Sums run over samples in a fixed order and
are rounded, so the incremental table and a rebuild from the logs agree to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from stageflow.store.profiles import ProfileRow, SampleRow

__all__ = [
    "FAILURE",
    "MAX_ATTEMPT_TOKENS",
    "MAX_ATTEMPT_USD",
    "REWORK",
    "SUCCESS",
    "aggregate",
    "percentile",
    "sane",
    "usable",
]

SUCCESS, REWORK, FAILURE = "success", "rework", "failure"
_DIGITS = 10
_RESULTS = (SUCCESS, REWORK, FAILURE)
MAX_ATTEMPT_USD = 1_000_000.0  # no attempt costs more; beyond it a figure is poison, capped
MAX_ATTEMPT_TOKENS = 10**12


def usable(s: SampleRow) -> bool:
    """Whether a sample's figures can be reckoned with: a known result, a non-negative cost
    (not NaN), non-negative tokens, a finite duration and time."""
    return (
        s.result in _RESULTS
        and isinstance(s.cost_usd, float | int)
        and not math.isnan(s.cost_usd)
        and s.cost_usd >= 0  # +inf passes, to be capped: a huge cost keeps a forecast high
        and s.tokens >= 0
        and math.isfinite(s.duration_s)
        and s.duration_s >= 0
        and math.isfinite(s.at)
    )


def sane(samples: Sequence[SampleRow]) -> list[SampleRow]:
    """The usable samples, with costs and tokens capped (see the module docstring)."""
    out = []
    for s in samples:
        if not usable(s):
            continue
        capped = s
        if s.cost_usd > MAX_ATTEMPT_USD or s.tokens > MAX_ATTEMPT_TOKENS:
            capped = replace(
                s,
                cost_usd=min(s.cost_usd, MAX_ATTEMPT_USD),
                tokens=min(s.tokens, MAX_ATTEMPT_TOKENS),
            )
        out.append(capped)
    return out


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank ``share`` percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def _mean(values: Sequence[float]) -> float:
    return round(math.fsum(values) / len(values), _DIGITS) if values else 0.0


def aggregate(samples: Sequence[SampleRow]) -> ProfileRow | None:
    """The profile row of one key's samples (all of the same agent, task type and model);
    None when none of them is usable."""
    samples = sane(samples)
    if not samples:
        return None
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
