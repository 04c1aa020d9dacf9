"""Run leases: which process executes a run, until when. ``store.leases``."""

from __future__ import annotations

from stageflow.store import queries as q
from stageflow.store.connection import fetch_all
from stageflow.store.database import Database, run_not_found
from stageflow.store.rows import RunRow, run_from_row


class LeaseStore:
    """The lease columns of the ``runs`` table, on a ``Store``'s database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(
        self, run_id: str, owner: str, *, ttl: float, now: float, steal_from: str | None = None
    ) -> bool:
        """Take the run's lease until ``now + ttl``; True if ``owner`` now holds it.

        Succeeds when the lease is free, expired (``lease_expires_at <= now``), already held by
        ``owner``, or held by exactly ``steal_from`` (an owner the caller proved dead).
        ``NotFound`` for an unknown run.
        """
        params = (owner, now + ttl, run_id, now, owner, steal_from)
        async with self._db.autocommit() as conn:
            taken = await conn.execute(q.ACQUIRE_LEASE, params)
            if taken.rowcount == 1:
                return True
            if not await fetch_all(conn, q.RUN_EXISTS, (run_id,)):
                raise await run_not_found(conn, run_id)
        return False

    async def renew(self, owner: str, *, ttl: float, now: float) -> list[str]:
        """Extend every lease ``owner`` holds to ``now + ttl``; return those run ids.

        A lease that expired but was not taken over is renewed too: nobody else can have started
        the run without changing its owner.
        """
        async with self._db.write() as conn:
            await conn.execute(q.RENEW_LEASES, (now + ttl, owner))
            rows = await fetch_all(conn, q.HELD_BY, (owner,))
        return [r[0] for r in rows]

    async def release(self, run_id: str, owner: str) -> None:
        """Give up the run's lease if ``owner`` holds it; otherwise do nothing."""
        async with self._db.autocommit() as conn:
            await conn.execute(q.RELEASE_LEASE, (run_id, owner))

    async def runs_without_live(self, now: float) -> list[RunRow]:
        """Active runs nobody is executing (no lease, or an expired one), oldest first."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.WITHOUT_LIVE_LEASE, (now,))
        return [run_from_row(r) for r in rows]
