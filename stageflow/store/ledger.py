"""The cost ledger: every model request, priced, stored as it returns (outside the hash-chained
log: a request is paid for whatever becomes of its attempt). ``store.ledger``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from stageflow.store import queries as q
from stageflow.store.connection import fetch_all
from stageflow.store.database import Database
from stageflow.store.rows import RequestRow, request_from_row


@dataclass(frozen=True)
class CostTotal:
    """The ledger summed for one run, stage and answering model."""

    run_id: str
    template: str
    stage: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


CostTotals = list[CostTotal]  # (``LedgerStore.list`` hides the builtin in the class)


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

    async def totals(self, since: float) -> CostTotals:
        """Spend since ``since`` (epoch seconds) per run, stage and model, across all runs.
        A request whose usage is not known yet counts its reservation."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.COST_TOTALS, (since,))
        return [
            CostTotal(
                run_id=r[0],
                template=r[1],
                stage=r[2],
                model=r[3],
                requests=int(r[4]),
                input_tokens=int(r[5] or 0),
                output_tokens=int(r[6] or 0),
                cache_read_tokens=int(r[7] or 0),
                cache_write_tokens=int(r[8] or 0),
                cost_usd=float(r[9] or 0),
            )
            for r in rows
        ]

    async def stage_agents(self, run_id: str) -> dict[str, str]:
        """Stage id -> agent name, from the spec the run was created with (no agent: absent)."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.RUN_CREATED_PAYLOAD, (run_id,))
        if not rows:
            return {}
        spec = json.loads(rows[0][0]).get("spec", {})
        return {
            str(st["id"]): str(st["agent"])
            for st in spec.get("stages", [])
            if isinstance(st, dict) and st.get("agent")
        }
