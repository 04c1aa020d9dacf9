"""Opening a SQLite connection with the settings every stageflow connection needs.

The connection runs in autocommit mode (``isolation_level=None``): the ``sqlite3`` module then
never opens or commits transactions behind our back, and the store issues ``BEGIN IMMEDIATE`` /
``COMMIT`` / ``ROLLBACK`` itself, so transaction boundaries are exactly the ones in the code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite

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
            rows = await fetch_all(conn, pragma)
            if pragma.startswith("PRAGMA journal_mode") and rows and rows[0][0] != "wal":
                # e.g. some network filesystems: still correct, but readers block writers
                log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", path, rows[0][0])
    except BaseException:
        await conn.close()
        raise
    return conn


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
) -> list[tuple[Any, ...]]:
    """Run a query and return its rows as tuples, in one trip to the connection's thread."""
    return cast(list[tuple[Any, ...]], list(await conn.execute_fetchall(sql, params)))
