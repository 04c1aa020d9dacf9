"""Schema: numbered migrations, recorded, applied once, snapshotted."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from stageflow.errors import StageflowError
from stageflow.store import Store
from stageflow.store.connection import fetch_all, open_connection
from stageflow.store.migrations import MIGRATIONS, Migration, apply_migrations, split_statements

SNAPSHOT = Path(__file__).with_name("schema.sql")


def _migration_rows(path: Path) -> list[tuple[int, str, float]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()


@pytest.mark.anyio
async def test_schema_matches_the_checked_in_snapshot(store: Store) -> None:
    # A schema change must come with a new migration and an updated tests/store/schema.sql.
    assert await store.schema() == SNAPSHOT.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_open_creates_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    async with await Store.open(path):
        pass
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.anyio
async def test_every_migration_is_recorded_once(db_path: Path) -> None:
    async with await Store.open(db_path):
        pass
    rows = _migration_rows(db_path)
    assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in MIGRATIONS]


@pytest.mark.anyio
async def test_reopening_applies_no_migration(db_path: Path) -> None:
    async with await Store.open(db_path) as first:
        schema = await first.schema()
    before = _migration_rows(db_path)
    async with await Store.open(db_path) as second:
        assert await second.schema() == schema
    assert _migration_rows(db_path) == before  # same applied_at: nothing re-ran


@pytest.mark.anyio
async def test_a_database_from_a_newer_stageflow_is_refused(db_path: Path) -> None:
    async with await Store.open(db_path):
        pass
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(StageflowError) as info:
        await Store.open(db_path)
    newest = max(m.version for m in MIGRATIONS)
    assert str(info.value) == (
        f"{db_path}: database schema version 999 is newer than this stageflow supports "
        f"({newest}); upgrade stageflow"
    )


@pytest.mark.anyio
async def test_two_stores_opening_a_fresh_database_at_once_migrate_it_once(db_path: Path) -> None:
    stores: list[Store] = []

    async def open_one() -> None:
        stores.append(await Store.open(db_path))

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(open_one)
                tg.start_soon(open_one)
    finally:
        for s in stores:
            await s.close()
    assert len(stores) == 2
    assert [v for v, _, _ in _migration_rows(db_path)] == [m.version for m in MIGRATIONS]


@pytest.mark.anyio
async def test_later_migrations_apply_in_order_and_a_failing_one_leaves_no_trace(
    tmp_path: Path,
) -> None:
    good = Migration(1, "one", "CREATE TABLE a (x INTEGER);")
    also_good = Migration(2, "two", "ALTER TABLE a ADD COLUMN y TEXT;")
    broken = Migration(3, "three", "CREATE TABLE b (x INTEGER);\nINSERT INTO nowhere VALUES (1);")
    conn = await open_connection(tmp_path / "m.db")
    try:
        assert await apply_migrations(conn, [also_good, good]) == [1, 2]
        assert await apply_migrations(conn, [good, also_good]) == []
        with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
            await apply_migrations(conn, [good, also_good, broken])
        assert not conn.in_transaction
        tables = await fetch_all(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")
        versions = await fetch_all(conn, "SELECT version FROM schema_migrations ORDER BY 1")
    finally:
        await conn.close()
    assert sorted(t for (t,) in tables) == ["a", "schema_migrations"]  # no table b
    assert [v for (v,) in versions] == [1, 2]


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    sql = """
    CREATE TABLE t (x INTEGER);
    CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
        UPDATE t SET x = x + 1;
        DELETE FROM t WHERE x > 10;
    END;
    """
    parts = split_statements(sql)
    assert len(parts) == 2
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")


def test_split_statements_rejects_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="incomplete SQL statement"):
        split_statements("CREATE TABLE t (x INTEGER);\nCREATE TABLE u (y")


@pytest.mark.anyio
async def test_three_stores_opening_fresh_databases_at_once_never_see_a_locked_error(
    tmp_path: Path,
) -> None:
    # SQLite answers "database is locked" at once (no busy handler) when connections switch a
    # fresh database to WAL together; before the open waited it out, about 1 in 14 tries of
    # three at once failed (CI flaked on the two-store test above)
    for i in range(40):
        path = tmp_path / f"db{i}" / "state.db"
        stores: list[Store] = []

        async def open_one(path: Path = path, stores: list[Store] = stores) -> None:
            stores.append(await Store.open(path))

        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(3):
                        tg.start_soon(open_one)
        finally:
            for s in stores:
                await s.close()
        assert len(stores) == 3
