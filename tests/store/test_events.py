"""Runs and their hash-chained event logs: create, append, load, conflicts, tampering."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.errors import ConcurrencyConflict, InvalidState, NotFound
from stageflow.store import RunSummary, Store
from stageflow.usage import Usage
from tests.store.conftest import RUNNING, new_run, run_created, started


def _count_events(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.mark.anyio
async def test_create_run_writes_the_row_and_the_first_event(store: Store) -> None:
    created = run_created(budget_usd=5, runner="claude-code")
    env = await store.create_run(
        "r-1",
        created,
        actor="cli",
        at=1000.0,
        summary=RunSummary(status="running", spent_usd=0.0, budget_usd=5.0),
    )
    assert (env.seq, env.prev_hash, env.at, env.actor) == (1, ev.GENESIS_HASH, 1000.0, "cli")
    row = await store.get_run("r-1")
    assert row.template == "feature_development"
    assert row.task == "build the thing"
    assert row.runner == "claude-code"
    assert (row.status, row.spent_usd, row.budget_usd) == ("running", 0.0, 5.0)
    assert (row.created_at, row.updated_at) == (1000.0, 1000.0)
    assert (row.last_seq, row.head_hash) == (1, env.hash)
    assert (row.owner, row.lease_expires_at) == (None, None)
    assert row.active


@pytest.mark.anyio
async def test_create_run_with_an_existing_id_is_refused(store: Store) -> None:
    await new_run(store, "r-1")
    with pytest.raises(InvalidState, match="run 'r-1' already exists"):
        await new_run(store, "r-1")
    assert len(await store.load_events("r-1")) == 1


@pytest.mark.anyio
async def test_reloaded_log_equals_the_appended_envelopes_and_verifies(store: Store) -> None:
    created = run_created(
        task="naïve résumé ✓", inputs={"n": 3, "ratio": 0.1, "pair": (1, 2), "deep": {"z": [1]}}
    )
    first = await store.create_run("r-1", created, actor="cli", at=1000.25, summary=RUNNING)
    batch: list[ev.Event] = [
        started("design"),
        ev.AttemptFinished(
            stage="design",
            attempt=1,
            outcome="passed",
            summary="ok",
            artifacts=[ev.ArtifactRef(name="design", version=1, size=3, sha256="ab" * 32)],
            usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.0123),
            duration_s=1.5,
        ),
        ev.ApprovalRequested(stage="design", expires_at=2000.0),
    ]
    appended = await store.append("r-1", batch, expect_seq=1, actor="host:1:a", at=1001.5)
    decided = await store.append(
        "r-1",
        [ev.ApprovalDecided(stage="design", decision="approve")],
        expect_seq=4,
        actor="human",
        at=1002,  # an int time is stored and hashed as a float
    )
    originals = [first, *appended, *decided]

    loaded = await store.load_events("r-1")

    assert loaded == originals
    assert [e.seq for e in loaded] == [1, 2, 3, 4, 5]
    assert ev.verify_chain(loaded) == []
    assert isinstance(loaded[0].event, ev.RunCreated)
    assert loaded[0].event.inputs["pair"] == [1, 2]  # what JSON gives back, in both copies
    assert (await store.get_run("r-1")).head_hash == loaded[-1].hash


@pytest.mark.anyio
async def test_load_events_after_a_seq_returns_only_the_newer_ones(store: Store) -> None:
    await new_run(store)
    await store.append("r-1", [started("a"), started("b"), started("c")], expect_seq=1, actor="x")
    newer = await store.load_events("r-1", after_seq=2)
    assert [e.seq for e in newer] == [3, 4]
    assert await store.load_events("r-1", after_seq=4) == []


@pytest.mark.anyio
async def test_append_updates_the_run_projection(store: Store) -> None:
    await new_run(store, at=1000.0)
    summary = RunSummary(status="waiting", spent_usd=0.42, budget_usd=3.0)
    await store.append("r-1", [started()], expect_seq=1, actor="x", at=1010.0, summary=summary)
    row = await store.get_run("r-1")
    assert (row.status, row.spent_usd, row.budget_usd) == ("waiting", 0.42, 3.0)
    assert (row.last_seq, row.created_at, row.updated_at) == (2, 1000.0, 1010.0)

    await store.append("r-1", [started("b")], expect_seq=2, actor="x", at=1020.0)
    row = await store.get_run("r-1")
    assert (row.status, row.spent_usd, row.last_seq, row.updated_at) == (
        "waiting",
        0.42,
        3,
        1020.0,
    )


@pytest.mark.anyio
async def test_append_with_a_stale_expect_seq_conflicts_and_writes_nothing(
    store: Store, db_path: Path
) -> None:
    await new_run(store)
    await store.append("r-1", [started()], expect_seq=1, actor="x")
    before = await store.get_run("r-1")

    with pytest.raises(ConcurrencyConflict) as info:
        await store.append(
            "r-1",
            [started("other")],
            expect_seq=1,
            actor="y",
            summary=RunSummary(status="failed", spent_usd=9.0, budget_usd=None),
        )

    err = info.value
    assert (err.run_id, err.expected_seq, err.actual_seq) == ("r-1", 1, 2)
    assert "r-1" in str(err) and "seq 1" in str(err) and "seq 2" in str(err)
    assert await store.get_run("r-1") == before
    assert _count_events(db_path) == 2


@pytest.mark.anyio
async def test_append_to_an_unknown_run_lists_known_runs(store: Store) -> None:
    await new_run(store, "r-1", at=1.0)
    await new_run(store, "r-2", at=2.0)
    with pytest.raises(NotFound) as info:
        await store.append("r-9", [started()], expect_seq=1, actor="x")
    assert (info.value.kind, info.value.name, info.value.known) == ("run", "r-9", ["r-2", "r-1"])


@pytest.mark.anyio
async def test_append_without_events_is_a_programming_error(store: Store) -> None:
    await new_run(store)
    with pytest.raises(ValueError, match="at least one event"):
        await store.append("r-1", [], expect_seq=1, actor="x")


@pytest.mark.anyio
async def test_load_events_of_an_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        await store.load_events("r-404")
    assert (info.value.kind, info.value.name, info.value.known) == ("run", "r-404", [])


@pytest.mark.anyio
@pytest.mark.parametrize("warm", [True, False], ids=["after-load", "cold"])
async def test_two_stores_appending_at_the_same_seq_exactly_one_wins(
    db_path: Path, warm: bool
) -> None:
    rounds = 15
    async with await Store.open(db_path) as one, await Store.open(db_path) as two:
        await new_run(one)
        wins: list[int] = []
        for seq in range(1, rounds + 1):
            if warm:  # both know the head: each seals against its cached hash
                await one.load_events("r-1")
                await two.load_events("r-1")
            outcomes: list[str] = []

            async def attempt(
                s: Store, name: str, seq: int = seq, out: list[str] = outcomes
            ) -> None:
                try:
                    await s.append("r-1", [started(name)], expect_seq=seq, actor=name)
                    out.append(name)
                except ConcurrencyConflict as exc:
                    assert (exc.expected_seq, exc.actual_seq) == (seq, seq + 1)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(attempt, one, "one")
                    tg.start_soon(attempt, two, "two")
            assert len(outcomes) == 1, outcomes
            wins.append(seq)
        log = await two.load_events("r-1")
    assert len(log) == rounds + 1
    assert ev.verify_chain(log) == []


@pytest.mark.anyio
async def test_a_writer_with_a_cached_head_notices_another_stores_append(db_path: Path) -> None:
    async with await Store.open(db_path) as one, await Store.open(db_path) as two:
        await new_run(one)  # `one` caches the head at seq 1
        await two.append("r-1", [started("by-two")], expect_seq=1, actor="two")
        with pytest.raises(ConcurrencyConflict) as info:
            await one.append("r-1", [started("by-one")], expect_seq=1, actor="one")
        assert info.value.actual_seq == 2
        # expect_seq 2 is not cached by `one`: it reads the head and chains onto two's entry
        await one.append("r-1", [started("by-one")], expect_seq=2, actor="one")
        log = await one.load_events("r-1")
    assert [e.actor for e in log] == ["tester", "two", "one"]
    assert ev.verify_chain(log) == []


@pytest.mark.anyio
async def test_a_cancelled_append_still_commits_whole_once_begun(store: Store) -> None:
    await new_run(store)
    conn = store._db.connection()
    # Hold the append inside its transaction (the trace callback runs on the connection's
    # thread before each statement), cancel the caller there, then let it go on.
    inside, release = threading.Event(), threading.Event()

    def hold_at_event_insert(sql: str) -> None:
        if sql.startswith("INSERT INTO events"):
            inside.set()
            release.wait(10)

    async def append_two() -> None:
        await store.append("r-1", [started(), started("b")], expect_seq=1, actor="x")

    await conn.set_trace_callback(hold_at_event_insert)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(append_two)
                assert await anyio.to_thread.run_sync(inside.wait, 10)
                tg.cancel_scope.cancel()
                release.set()
    finally:
        release.set()  # from here on the callback returns at once
    assert not conn.in_transaction
    log = await store.load_events("r-1")
    assert [e.seq for e in log] == [1, 2, 3]
    assert (await store.get_run("r-1")).last_seq == 3
    await store.append("r-1", [started("c")], expect_seq=3, actor="x")


@pytest.mark.anyio
async def test_verify_chain_pinpoints_an_entry_altered_in_the_database(
    store: Store, db_path: Path
) -> None:
    await new_run(store)
    await store.append("r-1", [started("a"), started("b"), started("c")], expect_seq=1, actor="x")
    assert ev.verify_chain(await store.load_events("r-1")) == []

    with closing(sqlite3.connect(db_path)) as db, db:
        changed = db.execute(
            'UPDATE events SET payload = replace(payload, \'"stage":"b"\', \'"stage":"B"\') '
            "WHERE run_id = 'r-1' AND seq = 3"
        ).rowcount
    assert changed == 1

    tampered = await store.load_events("r-1")
    assert isinstance(tampered[2].event, ev.AttemptStarted)
    assert tampered[2].event.stage == "B"
    assert ev.verify_chain(tampered) == ["seq 3: hash mismatch (entry was altered)"]


@pytest.mark.anyio
async def test_using_a_closed_store_raises_invalid_state(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(InvalidState, match="closed"):
        await store.get_run("r-1")


@pytest.mark.anyio
async def test_a_cached_head_of_a_deleted_and_recreated_run_is_not_chained_onto(
    db_path: Path,
) -> None:
    async with await Store.open(db_path) as one, await Store.open(db_path) as two:
        await new_run(one, "r-1", at=1.0)  # `one` caches (1, hash of this first incarnation)
        with closing(sqlite3.connect(db_path)) as db, db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("DELETE FROM runs WHERE run_id = 'r-1'")  # cascades to its events
        await new_run(two, "r-1", at=2.0)  # same id and seq, different head hash

        await one.append("r-1", [started()], expect_seq=1, actor="one")

        log = await one.load_events("r-1")
    assert ev.verify_chain(log) == []
    assert log[0].at == 2.0


@pytest.mark.anyio
async def test_the_installed_aiosqlite_supports_the_one_trip_append(db_path: Path) -> None:
    async with await Store.open(db_path) as opened:
        assert opened._fast, "aiosqlite lost Connection._execute: appends fall back to 5 trips"
