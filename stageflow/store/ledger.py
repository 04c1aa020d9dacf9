"""The cost ledger: every model request, priced, stored as it returns (outside the hash-chained
log: a request is paid for whatever becomes of its attempt). ``store.ledger``."""

from __future__ import annotations

from stageflow.store import queries as q
from stageflow.store.connection import fetch_all
from stageflow.store.database import Database
from stageflow.store.rows import RequestRow, request_from_row


class LedgerStore:
    """The ``model_requests`` table, on a ``Store``'s database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, run_id: str, row: RequestRow, *, at: float) -> None:
        """Add one model request to the ledger (one autocommitted statement)."""
        params = (run_id, row.stage, row.attempt, at, *row.values(), run_id, row.stage, row.attempt)
        async with self._db.autocommit() as conn:
            await conn.execute(q.INSERT_REQUEST, params)

    async def list(self, run_id: str) -> list[RequestRow]:
        """Every model request of a run, oldest first."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.LIST_REQUESTS, (run_id,))
        return [request_from_row(r) for r in rows]
