"""Run leases: at most one live owner per run."""

from __future__ import annotations

import pytest

from stageflow import events as ev
from stageflow.errors import LeaseLost, NotFound
from stageflow.store import RunSummary, Store
from tests.store.conftest import new_run, started

TTL = 30.0


async def _holder(store: Store, run_id: str = "r-1") -> tuple[str | None, float | None]:
    row = await store.get_run(run_id)
    return row.owner, row.lease_expires_at


@pytest.mark.anyio
async def test_a_free_lease_is_taken(store: Store) -> None:
    await new_run(store)
    assert await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    assert await _holder(store) == ("A", 130.0)


@pytest.mark.anyio
async def test_a_live_lease_of_another_owner_is_refused(store: Store) -> None:
    await new_run(store)
    await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    assert not await store.leases.acquire("r-1", "B", ttl=TTL, now=129.9)
    assert await _holder(store) == ("A", 130.0)


@pytest.mark.anyio
async def test_the_holder_can_take_its_own_lease_again(store: Store) -> None:
    await new_run(store)
    await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    assert await store.leases.acquire("r-1", "A", ttl=TTL, now=110.0)
    assert await _holder(store) == ("A", 140.0)


@pytest.mark.anyio
async def test_an_expired_lease_is_taken_over(store: Store) -> None:
    await new_run(store)
    await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    assert await store.leases.acquire("r-1", "B", ttl=TTL, now=130.0)  # expiry is inclusive
    assert await _holder(store) == ("B", 160.0)


@pytest.mark.anyio
async def test_steal_from_takes_a_live_lease_only_from_that_owner(store: Store) -> None:
    await new_run(store)
    await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    assert not await store.leases.acquire("r-1", "B", ttl=TTL, now=101.0, steal_from="C")
    assert await store.leases.acquire("r-1", "B", ttl=TTL, now=101.0, steal_from="A")
    assert await _holder(store) == ("B", 131.0)


@pytest.mark.anyio
async def test_acquiring_the_lease_of_an_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        await store.leases.acquire("r-404", "A", ttl=TTL, now=0.0)
    assert (info.value.kind, info.value.name) == ("run", "r-404")


@pytest.mark.anyio
async def test_renew_extends_only_the_owners_leases(store: Store) -> None:
    for run_id in ("r-1", "r-2", "r-3"):
        await new_run(store, run_id)
    await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    await store.leases.acquire("r-2", "A", ttl=TTL, now=100.0)
    await store.leases.acquire("r-3", "B", ttl=TTL, now=100.0)

    assert await store.leases.renew("A", ttl=TTL, now=120.0) == ["r-1", "r-2"]
    assert await _holder(store, "r-1") == ("A", 150.0)
    assert await _holder(store, "r-3") == ("B", 130.0)

    await store.leases.acquire("r-2", "B", ttl=TTL, now=151.0)  # A's lease on r-2 expired
    assert await store.leases.renew("A", ttl=TTL, now=152.0) == ["r-1"]  # r-1 unclaimed: kept
    assert await _holder(store, "r-2") == ("B", 181.0)
    assert await store.leases.renew("nobody", ttl=TTL, now=152.0) == []


@pytest.mark.anyio
async def test_release_frees_the_lease_only_for_its_holder(store: Store) -> None:
    await new_run(store)
    await store.leases.acquire("r-1", "A", ttl=TTL, now=100.0)
    await store.leases.release("r-1", "B")
    assert await _holder(store) == ("A", 130.0)
    await store.leases.release("r-1", "A")
    assert await _holder(store) == (None, None)
    assert await store.leases.acquire("r-1", "B", ttl=TTL, now=101.0)


@pytest.mark.anyio
async def test_runs_without_live_lease_are_active_runs_nobody_executes(store: Store) -> None:
    for i, run_id in enumerate(["free", "live", "expired", "done"]):
        await new_run(store, run_id, at=float(i))
    await store.leases.acquire("live", "A", ttl=TTL, now=100.0)
    await store.leases.acquire("expired", "A", ttl=TTL, now=50.0)
    await store.append(
        "done",
        [started()],
        expect_seq=1,
        actor="x",
        summary=RunSummary(status="completed", spent_usd=0.0, budget_usd=None),
    )

    orphans = await store.leases.runs_without_live(now=100.0)

    assert [r.run_id for r in orphans] == ["free", "expired"]
    assert orphans[1].owner == "A"


@pytest.mark.anyio
async def test_append_as_a_former_lease_holder_is_refused_and_writes_nothing(
    store: Store,
) -> None:

    await new_run(store)
    assert await store.leases.acquire("r-1", "host:1:a", ttl=10, now=1000.0)
    await store.append("r-1", [started()], expect_seq=1, actor="a", holder="host:1:a")
    # the lease expires and another process takes the run over
    assert await store.leases.acquire("r-1", "host:2:b", ttl=10, now=1020.0)
    with pytest.raises(LeaseLost, match="now executed by host:2:b"):
        await store.append("r-1", [started("b")], expect_seq=2, actor="a", holder="host:1:a")
    assert [e.seq for e in await store.load_events("r-1")] == [1, 2]
    # commands from people (no holder) are still accepted
    await store.append("r-1", [ev.RunPaused(reason="x")], expect_seq=2, actor="human")
