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

    async def record(self, run_id: str, row: RequestRow, *, at: float) -> int:
        """Add one model request to the ledger (one autocommitted statement); its ``seq``.
        A row with ``done`` False is a request sent whose usage is not known yet."""
        params = (run_id, row.stage, row.attempt, at, *row.values(), run_id, row.stage, row.attempt)
        async with self._db.autocommit() as conn:
            rows = await fetch_all(conn, q.INSERT_REQUEST, params)
        return int(rows[0][0])

    async def finish(self, run_id: str, row: RequestRow) -> None:
        """Complete the request ``row.seq`` with its usage (it was recorded as started)."""
        usage = (
            row.model,
            row.input_tokens,
            row.output_tokens,
            row.cache_write_5m_tokens,
            row.cache_write_1h_tokens,
            row.cache_read_tokens,
            row.cost_usd,
            int(row.priced),
            row.request_id,
        )
        async with self._db.autocommit() as conn:
            await conn.execute(q.FINISH_REQUEST, (*usage, run_id, row.stage, row.attempt, row.seq))

    async def release(self, run_id: str, stage: str, attempt: int, seq: int) -> None:
        """The request ``seq`` was not billed (refused, or the provider answered an error): it
        leaves the ledger, which holds what was, or may have been, paid for."""
        async with self._db.autocommit() as conn:
            await conn.execute(q.RELEASE_REQUEST, (run_id, stage, attempt, seq))

    async def list(self, run_id: str) -> list[RequestRow]:
        """Every model request of a run, oldest first."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.LIST_REQUESTS, (run_id,))
        return [request_from_row(r) for r in rows]
