"""Opening the database for reading only: nothing is written, and every write is refused
before it starts, naming the file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from stageflow.errors import DatabaseError
from stageflow.store import Store
from stageflow.store.rows import RequestRow
from tests.store.conftest import RUNNING, new_run, run_created, started

pytestmark = pytest.mark.anyio


async def test_a_read_only_store_reads_and_refuses_every_write(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        await new_run(store)
    before = await anyio.Path(db_path).read_bytes()
    async with await Store.open(db_path, access="read") as store:
        assert store.read_only
        assert [e.seq for e in await store.load_events("r-1")] == [1]
        assert (await store.get_run("r-1")).status == "running"
        writes = [
            store.append("r-1", [started()], expect_seq=1, actor="t", at=1.0, summary=RUNNING),
            store.create_run("r-2", run_created(), actor="t", at=1.0, summary=RUNNING),
            store.ledger.record(
                "r-1", RequestRow(stage="s", attempt=1, model_requested="m", model="m"), at=1.0
            ),
            store.leases.acquire("r-1", "me", ttl=10, now=1.0),
        ]
        for write in writes:
            with pytest.raises(DatabaseError) as info:
                await write
            assert info.value.read_only and str(db_path) in str(info.value)
    assert await anyio.Path(db_path).read_bytes() == before


async def test_reading_a_missing_database_says_so(db_path: Path) -> None:
    with pytest.raises(DatabaseError) as info:
        await Store.open(db_path, access="read")
    assert str(info.value) == f"no database at {db_path} yet"
    assert not await anyio.Path(db_path).exists()


async def test_auto_writes_when_it_can(db_path: Path) -> None:
    async with await Store.open(db_path, access="auto") as store:
        assert not store.read_only
        await new_run(store)  # created and migrated as with "write"


async def test_a_read_only_store_refuses_a_schema_it_cannot_upgrade(db_path: Path) -> None:
    async with await Store.open(db_path):
        pass
    with closing(sqlite3.connect(db_path)) as db, db:
        latest = db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        db.execute("DELETE FROM schema_migrations WHERE version = ?", (latest,))
    with pytest.raises(DatabaseError) as info:
        await Store.open(db_path, access="read")
    assert "cannot be upgraded while the database is read-only" in str(info.value)


@pytest.mark.parametrize("access", ["write", "read", "auto"])
async def test_a_file_that_is_not_a_database_is_one_clear_error(db_path: Path, access: str) -> None:
    await anyio.Path(db_path.parent).mkdir(parents=True)
    await anyio.Path(db_path).write_bytes(b"not a database at all\n" * 100)
    with pytest.raises(DatabaseError) as info:
        await Store.open(db_path, access=access)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{db_path} is not a usable stageflow database")
