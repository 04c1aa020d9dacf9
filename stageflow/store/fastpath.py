"""One round trip per append.

aiosqlite runs every statement on its connection's worker thread, and each call is a trip
there and back (about 70 µs here, more under load): a five-statement append costs five. The
hot path of the engine (one append per stage step) therefore runs the whole transaction as a
single function on that thread through ``aiosqlite.Connection._execute``. That method is
private, so we use it only when it exists (it has, unchanged, since aiosqlite 0.17) and fall
back to the statement-by-statement path otherwise; ``tests/store`` exercises both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, cast

import aiosqlite

from stageflow.store import queries as q

Rows = Sequence[tuple[Any, ...]]


def available(conn: aiosqlite.Connection) -> bool:
    """Whether this aiosqlite exposes the hook the fast path needs."""
    return callable(getattr(conn, "_execute", None)) and hasattr(conn, "_conn")


async def run_in_connection_thread(
    conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], Any]
) -> Any:
    """Call ``fn(sqlite3_connection)`` on the connection's own thread, in one trip."""
    execute = cast(Callable[..., Any], conn._execute)

    def call() -> Any:
        return fn(conn._conn)

    return await execute(call)


def append_transaction(
    *,
    move_head: tuple[Any, ...],
    with_summary: bool,
    events: Rows,
    artifacts: Rows,
) -> Callable[[sqlite3.Connection], bool]:
    """The whole append as one function: False (rolled back) if the head moved under us.

    ``IntegrityError`` from a duplicate artifact propagates after the rollback.
    """

    def run(db: sqlite3.Connection) -> bool:
        db.execute("BEGIN IMMEDIATE")
        try:
            sql = q.MOVE_HEAD_WITH_SUMMARY if with_summary else q.MOVE_HEAD
            if db.execute(sql, move_head).rowcount != 1:
                db.execute("ROLLBACK")
                return False
            db.executemany(q.INSERT_EVENT, events)
            if artifacts:
                db.executemany(q.INSERT_ARTIFACT, artifacts)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return True

    return run
