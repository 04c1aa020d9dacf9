"""Run rows: lookup, listing, active runs."""

from __future__ import annotations

import pytest

from stageflow.errors import NotFound
from stageflow.store import RunSummary, Store
from tests.store.conftest import new_run, started


async def _set_status(store: Store, run_id: str, status: str) -> None:
    row = await store.get_run(run_id)
    await store.append(
        run_id,
        [started()],
        expect_seq=row.last_seq,
        actor="x",
        summary=RunSummary(status=status, spent_usd=0.0, budget_usd=None),
    )


@pytest.mark.anyio
async def test_get_run_of_an_unknown_id_lists_the_20_most_recent_runs(store: Store) -> None:
    for i in range(25):
        await new_run(store, f"r-{i:02d}", at=100.0 + i)
    with pytest.raises(NotFound) as info:
        await store.get_run("r-xx")
    assert (info.value.kind, info.value.name) == ("run", "r-xx")
    assert info.value.known == [f"r-{i:02d}" for i in range(24, 4, -1)]


@pytest.mark.anyio
async def test_list_runs_is_newest_first_and_limited(store: Store) -> None:
    for i, at in enumerate([30.0, 10.0, 20.0]):
        await new_run(store, f"r-{i}", at=at)
    assert [r.run_id for r in await store.list_runs()] == ["r-0", "r-2", "r-1"]
    assert [r.run_id for r in await store.list_runs(limit=2)] == ["r-0", "r-2"]


@pytest.mark.anyio
async def test_list_runs_filters_by_status(store: Store) -> None:
    for i in range(4):
        await new_run(store, f"r-{i}", at=float(i))
    await _set_status(store, "r-1", "completed")
    await _set_status(store, "r-2", "waiting")
    await _set_status(store, "r-3", "failed")

    done = await store.list_runs(statuses={"completed", "failed"})
    assert [(r.run_id, r.status) for r in done] == [("r-3", "failed"), ("r-1", "completed")]
    assert [r.run_id for r in await store.list_runs(statuses=["running"])] == ["r-0"]
    assert await store.list_runs(statuses=[]) == []


@pytest.mark.anyio
async def test_active_run_ids_leave_out_finished_runs(store: Store) -> None:
    for i in range(5):
        await new_run(store, f"r-{i}", at=float(i))
    await _set_status(store, "r-0", "completed")
    await _set_status(store, "r-1", "cancelled")
    await _set_status(store, "r-2", "failed")
    await _set_status(store, "r-3", "paused")
    assert await store.active_run_ids() == ["r-3", "r-4"]
    assert not (await store.get_run("r-0")).active
