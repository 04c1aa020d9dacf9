"""The cost ledger: one row per model request, numbered per attempt, kept with the run."""

from __future__ import annotations

import pytest

from stageflow.store import Store
from stageflow.store.rows import RequestRow
from tests.store.conftest import new_run


def _row(stage: str, attempt: int, cost: float, **extra: object) -> RequestRow:
    return RequestRow(
        stage=stage,
        attempt=attempt,
        model_requested="claude-sonnet-4-6",
        model="claude-sonnet-4-6-20260101",
        input_tokens=100,
        output_tokens=20,
        cache_write_5m_tokens=30,
        cache_write_1h_tokens=40,
        cache_read_tokens=50,
        cost_usd=cost,
        request_id="req_1",
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.anyio
async def test_requests_are_numbered_per_attempt_and_read_back_in_order(store: Store) -> None:
    await new_run(store)
    await store.ledger.record("r-1", _row("design", 1, 0.5), at=10.0)
    await store.ledger.record("r-1", _row("design", 1, 0.25), at=11.0)
    await store.ledger.record("r-1", _row("design", 2, 0.125, priced=False), at=12.0)
    await store.ledger.record("r-1", _row("build", 1, 1.0), at=13.0)

    rows = await store.ledger.list("r-1")

    assert [(r.stage, r.attempt, r.seq) for r in rows] == [
        ("design", 1, 1),
        ("design", 1, 2),
        ("design", 2, 1),
        ("build", 1, 1),
    ]
    first = rows[0]
    assert (first.input_tokens, first.output_tokens) == (100, 20)
    assert (first.cache_write_5m_tokens, first.cache_write_1h_tokens) == (30, 40)
    assert (first.cache_read_tokens, first.cost_usd, first.at) == (50, 0.5, 10.0)
    assert first.model == "claude-sonnet-4-6-20260101" and first.request_id == "req_1"
    assert [r.priced for r in rows] == [True, True, False, True]
    assert sum(r.cost_usd for r in rows) == 1.875


@pytest.mark.anyio
async def test_a_run_without_requests_has_an_empty_ledger(store: Store) -> None:
    await new_run(store)
    assert await store.ledger.list("r-1") == []
