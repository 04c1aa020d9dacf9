"""``Database``: one SQLite connection and the lock that serialises its use.

The store and the knowledge tables share it: reads, one-statement writes and ``BEGIN
IMMEDIATE`` transactions, each holding the lock, the writes shielded from cancellation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiosqlite
import anyio

from stageflow.errors import DatabaseError, InvalidState, NotFound
from stageflow.store import queries as q
from stageflow.store.connection import damaged, fetch_all, is_damage

_KNOWN_LIMIT = 20  # run ids listed when one is unknown


class Database:
    """A connection (closed: ``None``) and its lock."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = conn
        self._lock = anyio.Lock()
        self.read_only = False  # opened read-only: writes are refused before they start

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.close()

    def connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise InvalidState(f"the store for {self.path} is closed")
        return self._conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for reads."""
        async with self._lock:
            with self._mapped():
                yield self.connection()

    @asynccontextmanager
    async def shielded(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection under the lock, shielded from cancellation, for writes: for work
        that must always reach its commit or rollback once begun (the store's one-trip
        append). Refused on a database opened read-only."""
        if self.read_only:
            raise DatabaseError(
                f"{self.path} is open read-only (it or its folder cannot be written); this "
                "needs write access",
                path=str(self.path),
                read_only=True,
            )
        async with self._lock:
            with anyio.CancelScope(shield=True), self._mapped():
                yield self.connection()

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """SQLite's "not a database" / "malformed" errors become a ``DatabaseError`` that
        names the file and what to do (a damaged page may only show on the query that reads
        it)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(self.path, exc) from exc
            raise

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for a write that is one statement (atomic without BEGIN).

        Shielded like ``write``: a lease taken by an UPDATE whose caller was cancelled would
        otherwise be held, and renewed, by an owner that does not know it holds it.
        """
        async with self.shielded() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, else rolled back.

        Shielded: once begun, the transaction runs to its commit or rollback even if the caller
        is cancelled; otherwise the caller could not know whether it committed, and the shared
        connection could be left inside an open transaction. The price: a cancellation waits
        for the transaction (at worst busy_timeout for the write lock).
        """
        async with self.shielded() as conn:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise


async def run_not_found(conn: aiosqlite.Connection, run_id: str) -> NotFound:
    """``NotFound`` for ``run_id``, listing the most recent run ids."""
    rows = await fetch_all(conn, q.RECENT_RUN_IDS, (_KNOWN_LIMIT,))
    return NotFound("run", run_id, known=[r[0] for r in rows])
