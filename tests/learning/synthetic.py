"""Synthetic histories: samples with chosen ages and verdicts, and a book made of them."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import count

from stageflow.learning.book import ProfileBook
from stageflow.store.profiles import SampleRow

DAY = 86_400.0
NOW = 1_900_000_000.0  # a fixed "now" for every synthetic history

_ids = count(1)


def sample(
    agent: str = "developer",
    task_type: str = "feature",
    model: str = "claude-sonnet-4-6",
    *,
    ok: bool = True,
    result: str | None = None,
    age_days: float = 0.0,
    cost: float = 0.10,
    tokens: int = 1000,
    duration: float = 1.0,
    template: str = "t",
    stage: str = "s",
    explored: bool = False,
    run_id: str | None = None,
) -> SampleRow:
    """One finished attempt ``age_days`` before ``NOW``."""
    return SampleRow(
        run_id=run_id or f"run-{next(_ids)}",
        stage=stage,
        attempt=1,
        template=template,
        agent=agent,
        task_type=task_type,
        model=model,
        result=result or ("success" if ok else "failure"),
        tokens=tokens,
        cost_usd=cost,
        duration_s=duration,
        at=NOW - age_days * DAY,
        explored=explored,
    )


def many(n: int, **kw: object) -> list[SampleRow]:
    return [sample(**kw) for _ in range(n)]  # type: ignore[arg-type]


def book(*groups: Iterable[SampleRow]) -> ProfileBook:
    return ProfileBook([s for g in groups for s in g])
