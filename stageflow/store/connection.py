"""Opening a SQLite connection with the settings every stageflow connection needs.

The connection runs in autocommit mode (``isolation_level=None``): the ``sqlite3`` module then
never opens or commits transactions behind our back, and the store issues ``BEGIN IMMEDIATE`` /
``COMMIT`` / ``ROLLBACK`` itself, so transaction boundaries are exactly the ones in the code.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio

from stageflow.errors import DatabaseError

log = logging.getLogger(__name__)

#: How long a writer waits for another connection's write lock before failing with "busy".
BUSY_TIMEOUT_MS = 10_000

# busy_timeout goes first: switching to WAL needs a brief exclusive lock, and a second process
# opening the same fresh database must wait for it rather than fail.
_PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    # FULL: every commit is synced to the WAL before COMMIT returns, so a committed transition
    # survives a power loss too, not only a process crash (NORMAL would sync at checkpoints).
    "PRAGMA synchronous=FULL",
)


async def open_connection(path: Path) -> aiosqlite.Connection:
    """Connect to ``path`` (creating parent directories) with WAL and foreign keys on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        for pragma in _PRAGMAS:
            rows = await _retry_locked(conn, pragma)
            if pragma.startswith("PRAGMA journal_mode") and rows and rows[0][0] != "wal":
                # e.g. some network filesystems: still correct, but readers block writers
                log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", path, rows[0][0])
    except BaseException:
        await conn.close()
        raise
    return conn


async def _retry_locked(conn: aiosqlite.Connection, pragma: str) -> list[tuple[Any, ...]]:
    """Run ``pragma``, waiting out another connection's lock. SQLite answers "database is
    locked" at once, without calling the busy handler, when two connections switch a fresh
    database to WAL at the same moment (waiting could deadlock them); so wait here, in
    growing steps, up to the busy timeout."""
    waited, step = 0.0, 0.01
    while True:
        try:
            return await fetch_all(conn, pragma)
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or waited >= BUSY_TIMEOUT_MS / 1000:
                raise
        await anyio.sleep(step)
        waited += step
        step = min(step * 2, 0.25)


def damaged(path: Path, exc: BaseException) -> DatabaseError:
    """The error for a file SQLite cannot read as a database (truncated, overwritten, not one)."""
    return DatabaseError(
        f"{path} is not a usable stageflow database ({exc}): restore it from a backup, or move "
        "it aside to start afresh (runs in it are then no longer listed); to see what can still "
        "be read, copy it and run `stageflow audit RUN --verify --db <copy>`",
        path=str(path),
    )


def is_damage(exc: BaseException) -> bool:
    """True for SQLite's "not a database" / "malformed" errors (not for busy, locked, or a
    constraint: those are ``OperationalError`` and ``IntegrityError``)."""
    return type(exc) is sqlite3.DatabaseError


def is_read_only(exc: BaseException) -> bool:
    """True when SQLite refused because the file or its folder cannot be written."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and (
        "readonly" in text or "read-only" in text or "unable to open database file" in text
    )


async def open_read_only(path: Path) -> aiosqlite.Connection:
    """Connect to an existing database without ever writing to it or its folder.

    ``mode=ro`` reads a WAL database through its ``-shm`` index; when the folder is read-only
    and no other process has the database open there is no ``-wal``/``-shm`` to read, and the
    file is opened ``immutable`` (exactly what is on disk, which is then everything).
    """
    uri = (await anyio.Path(path).resolve()).as_uri()
    conn = await aiosqlite.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
    try:
        await fetch_all(conn, "PRAGMA schema_version")
    except BaseException as exc:
        await conn.close()
        if not isinstance(exc, sqlite3.OperationalError):
            raise
        if await anyio.Path(path.with_name(path.name + "-wal")).exists():
            raise  # another process writes it: an immutable read could miss its commits
        conn = await aiosqlite.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
    try:
        await fetch_all(conn, f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await fetch_all(conn, "PRAGMA query_only=ON")
        await fetch_all(conn, "PRAGMA schema_version")  # a file that is not a database fails here
    except BaseException:
        await conn.close()
        raise
    return conn


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
) -> list[tuple[Any, ...]]:
    """Run a query and return its rows as tuples, in one trip to the connection's thread."""
    return cast(list[tuple[Any, ...]], list(await conn.execute_fetchall(sql, params)))
