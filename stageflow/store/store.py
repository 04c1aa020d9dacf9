"""``Store``: runs, their hash-chained event logs, artifacts and leases in one SQLite file.

One ``Store`` owns one connection, shared by the tasks of a process. An ``anyio.Lock`` serializes
every use of it, so a task never reads another task's uncommitted transaction. Separate
processes (or ``Store`` instances) coordinate through SQLite itself: writes start with
``BEGIN IMMEDIATE`` (take the write lock up front, waiting up to ``busy_timeout``), and
``append`` checks the caller's ``expect_seq`` against the log head inside that transaction.

Every call to the connection is a trip to its worker thread (~0.1 ms here), so ``append`` keeps
them few: the head it seals against comes from a cache of ``(seq, hash)`` pairs this instance has
seen (an entry of an append-only log never changes), and the guarded head UPDATE doubles as the
concurrency check. Only when that guard misses does it read the head and try once more.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType

import aiosqlite

from stageflow.errors import (
    ConcurrencyConflict,
    InvalidState,
    LeaseLost,
    NotFound,
)
from stageflow.events import GENESIS_HASH, Envelope, Event, RunCreated
from stageflow.store import fastpath
from stageflow.store import queries as q
from stageflow.store.connection import fetch_all
from stageflow.store.database import Database, run_not_found
from stageflow.store.eventlog import envelope_from_row, seal_row, seal_rows
from stageflow.store.knowledge import KnowledgeStore
from stageflow.store.leases import LeaseStore
from stageflow.store.ledger import LedgerStore
from stageflow.store.opening import Access, open_database
from stageflow.store.profiles import ProfileStore
from stageflow.store.rows import (
    ArtifactMeta,
    ArtifactRecord,
    NewArtifact,
    RequestRow,
    RunRow,
    RunSummary,
    artifact_from_row,
    artifact_meta_from_row,
    run_from_row,
)

__all__ = [
    "ArtifactMeta",
    "ArtifactRecord",
    "NewArtifact",
    "RequestRow",
    "RunRow",
    "RunSummary",
    "Store",
]


class _StaleHead(ConcurrencyConflict):
    """The head an append was sealed against is not the run's head any more.

    Raised only for a cached head (``append`` then reads the head and tries again): a head read
    inside the write transaction cannot move before the commit.
    """

    def __init__(self, run_id: str, expected_seq: int) -> None:
        super().__init__(
            f"run '{run_id}': its log moved past seq {expected_seq} during the append",
            run_id=run_id,
            expected_seq=expected_seq,
        )


class Store:
    """Async access to one stageflow state database. Open with ``await Store.open(path)``."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._db = Database(path, conn)
        self._heads: dict[str, tuple[int, str]] = {}  # run id -> a (seq, hash) seen in its log
        self._fast = fastpath.available(conn)  # one trip per append (tests switch it off)
        self._listeners: list[Callable[[str, str | None], None]] = []
        self.read_only = False  # opened with access="read": every write fails

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, *, access: Access = "write") -> Store:
        """Open the database at ``path``; ``access`` is explained in ``store/opening.py``
        (``write`` creates and migrates, ``read`` never writes, ``auto`` writes when it can)."""
        conn, read_only = await open_database(path, access)
        store = cls(path, conn)
        store.read_only = store._db.read_only = read_only
        return store

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def ledger(self) -> LedgerStore:
        """The cost ledger, on this store's connection and lock."""
        return LedgerStore(self._db)

    @property
    def leases(self) -> LeaseStore:
        """Run leases, on this store's connection and lock."""
        return LeaseStore(self._db)

    @property
    def knowledge(self) -> KnowledgeStore:
        """The knowledge base's tables, on this store's connection and lock."""
        return KnowledgeStore(self._db)

    @property
    def profiles(self) -> ProfileStore:
        """The learning profiles' tables, on this store's connection and lock."""
        return ProfileStore(self._db)

    def _remember_head(self, run_id: str, seq: int, digest: str) -> None:
        known = self._heads.get(run_id)
        if known is None or known[0] <= seq:
            self._heads[run_id] = (seq, digest)

    # -- runs and events ---------------------------------------------------------------------

    async def create_run(
        self, run_id: str, created: RunCreated, *, actor: str, at: float, summary: RunSummary
    ) -> Envelope:
        """Insert the run's row and its first event (seq 1) in one transaction.

        Raises ``InvalidState`` if a run with this id exists.
        """
        at = float(at)  # an int would hash as "5" but come back from a REAL column as 5.0
        envelope, row = seal_row(run_id, 1, at, actor, created, GENESIS_HASH)
        run = (
            run_id,
            created.template,
            created.task,
            summary.status,
            at,
            at,
            1,
            envelope.hash,
            summary.spent_usd,
            summary.budget_usd,
            created.runner,
        )
        async with self._db.write() as conn:
            try:
                await conn.execute(q.INSERT_RUN, run)
            except sqlite3.IntegrityError as exc:
                raise InvalidState(f"run '{run_id}' already exists") from exc
            await conn.execute(q.INSERT_EVENT, row)
        self._remember_head(run_id, 1, envelope.hash)
        return envelope

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expect_seq: int,
        actor: str,
        at: float | None = None,
        summary: RunSummary | None = None,
        artifacts: Sequence[NewArtifact] = (),
        holder: str | None = None,
    ) -> list[Envelope]:
        """Append events (and the artifacts they reference) to a run's log in one transaction.

        ``holder``, when given, must be the run's lease owner, or ``LeaseLost`` is raised and
        nothing is written: an executing process that lost its lease can never append.

        ``expect_seq`` is the last seq the caller has seen; if another writer appended since,
        raises ``ConcurrencyConflict`` and writes nothing. A duplicate artifact version raises
        ``InvalidState`` and also writes nothing; an unknown run raises ``NotFound``.
        ``summary``, when given, updates the run's status and money columns in the same
        transaction. Returns the new envelopes, exactly as ``load_events`` will return them.
        """
        envelopes = await self._append_once(
            run_id, events, expect_seq, actor, at, summary, artifacts, holder
        )
        for listener in list(self._listeners):
            listener(run_id, holder)
        return envelopes

    def on_append(self, listener: Callable[[str, str | None], None]) -> Callable[[], None]:
        """Call ``listener(run_id, holder)`` after every append through this Store; returns a
        function that unsubscribes. In-process executors learn about commands this way:
        SQLite's data_version does not change for the connection's own writes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def _append_once(
        self,
        run_id: str,
        events: Sequence[Event],
        expect_seq: int,
        actor: str,
        at: float | None,
        summary: RunSummary | None,
        artifacts: Sequence[NewArtifact],
        holder: str | None,
    ) -> list[Envelope]:
        if not events:
            raise ValueError("append needs at least one event")
        when = float(time.time() if at is None else at)
        _reject_duplicate_artifacts(artifacts)
        cached = self._heads.get(run_id)
        if cached is not None and cached[0] == expect_seq:
            try:
                return await self._append(
                    run_id, events, expect_seq, cached[1], actor, when, summary, artifacts, holder
                )
            except _StaleHead:
                pass  # someone else appended (or the run is gone): read the head and retry
        return await self._append(
            run_id, events, expect_seq, None, actor, when, summary, artifacts, holder
        )

    async def _append(
        self,
        run_id: str,
        events: Sequence[Event],
        expect_seq: int,
        head_hash: str | None,
        actor: str,
        at: float,
        summary: RunSummary | None,
        artifacts: Sequence[NewArtifact],
        holder: str | None = None,
    ) -> list[Envelope]:
        """One append transaction, sealed against ``head_hash`` (read from the run if None)."""
        if head_hash is not None and self._fast:
            envelopes = await self._append_fast(
                run_id, events, expect_seq, head_hash, actor, at, summary, artifacts, holder
            )
            if envelopes is not None:
                return envelopes
            # a duplicate artifact: the statement-by-statement path names it precisely
        async with self._db.write() as conn:
            if head_hash is None:
                head = await fetch_all(conn, q.SELECT_HEAD, (run_id,))
                if not head:
                    raise await run_not_found(conn, run_id)
                last_seq, head_hash, owner = head[0]
                if holder is not None and owner != holder:
                    raise LeaseLost(
                        f"run '{run_id}' is now executed by {owner or 'no process'}, not by "
                        f"{holder}; this process stops executing it"
                    )
                if last_seq != expect_seq:
                    raise ConcurrencyConflict(
                        f"run '{run_id}': expected its log at seq {expect_seq}, but it is at "
                        f"seq {last_seq}; another writer appended first",
                        run_id=run_id,
                        expected_seq=expect_seq,
                        actual_seq=last_seq,
                    )
            envelopes, rows = seal_rows(
                run_id, events, after_seq=expect_seq, prev_hash=head_hash, at=at, actor=actor
            )
            new_seq, new_hash = envelopes[-1].seq, envelopes[-1].hash
            if summary is None:
                moved = await conn.execute(
                    q.MOVE_HEAD,
                    (new_seq, new_hash, at, run_id, expect_seq, head_hash, holder, holder),
                )
            else:
                moved = await conn.execute(
                    q.MOVE_HEAD_WITH_SUMMARY,
                    (
                        new_seq,
                        new_hash,
                        at,
                        summary.status,
                        summary.spent_usd,
                        summary.budget_usd,
                        run_id,
                        expect_seq,
                        head_hash,
                        holder,
                        holder,
                    ),
                )
            if moved.rowcount != 1:
                raise _StaleHead(run_id, expect_seq)
            if len(rows) == 1:
                await conn.execute(q.INSERT_EVENT, rows[0])
            else:
                await conn.executemany(q.INSERT_EVENT, rows)
            for art in artifacts:
                try:
                    await conn.execute(
                        q.INSERT_ARTIFACT,
                        (
                            run_id,
                            art.stage,
                            art.name,
                            art.version,
                            art.content,
                            art.size,
                            art.sha256,
                            art.attempt,
                            at,
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    msg = f"run '{run_id}': artifact {art.key} already exists"
                    raise InvalidState(msg) from exc
        self._remember_head(run_id, new_seq, new_hash)
        return envelopes

    async def _append_fast(
        self,
        run_id: str,
        events: Sequence[Event],
        expect_seq: int,
        head_hash: str,
        actor: str,
        at: float,
        summary: RunSummary | None,
        artifacts: Sequence[NewArtifact],
        holder: str | None,
    ) -> list[Envelope] | None:
        """The append in one trip to the connection's thread (see ``fastpath``)."""
        envelopes, rows = seal_rows(
            run_id, events, after_seq=expect_seq, prev_hash=head_hash, at=at, actor=actor
        )
        new_seq, new_hash = envelopes[-1].seq, envelopes[-1].hash
        if summary is None:
            move: tuple[object, ...] = (new_seq, new_hash, at)
        else:
            move = (new_seq, new_hash, at, summary.status, summary.spent_usd, summary.budget_usd)
        move += (run_id, expect_seq, head_hash, holder, holder)
        art_rows = [
            (run_id, a.stage, a.name, a.version, a.content, a.size, a.sha256, a.attempt, at)
            for a in artifacts
        ]
        transaction = fastpath.append_transaction(
            move_head=move, with_summary=summary is not None, events=rows, artifacts=art_rows
        )
        async with self._db.shielded() as conn:  # as in ``write``: always commit or roll back
            try:
                moved = await fastpath.run_in_connection_thread(conn, transaction)
            except sqlite3.IntegrityError:
                return None
        if not moved:
            raise _StaleHead(run_id, expect_seq)
        self._remember_head(run_id, new_seq, new_hash)
        return envelopes

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Envelope]:
        """The run's envelopes with seq > ``after_seq``, in order. ``NotFound`` if no such run."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.SELECT_EVENTS, (run_id, after_seq))
            if not rows and not await fetch_all(conn, q.RUN_EXISTS, (run_id,)):
                raise await run_not_found(conn, run_id)
        envelopes = [envelope_from_row(run_id, row) for row in rows]
        if envelopes:
            self._remember_head(run_id, envelopes[-1].seq, envelopes[-1].hash)
        return envelopes

    async def get_run(self, run_id: str) -> RunRow:
        """The run's row; ``NotFound`` (listing recent run ids) if there is none."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.SELECT_RUN, (run_id,))
            if not rows:
                raise await run_not_found(conn, run_id)
        return run_from_row(rows[0])

    async def list_runs(
        self, *, limit: int = 20, statuses: Collection[str] | None = None
    ) -> list[RunRow]:
        """Runs, newest first, optionally only those with one of ``statuses``."""
        params: list[object] = []
        where = ""
        if statuses is not None:
            if not statuses:
                return []
            params.extend(statuses)
            where = f" WHERE status IN ({', '.join('?' * len(statuses))})"
        params.append(limit)
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.LIST_RUNS.format(where=where), params)
        return [run_from_row(r) for r in rows]

    async def active_run_ids(self) -> list[str]:
        """Ids of runs not completed, failed or cancelled, oldest first."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.ACTIVE_RUN_IDS)
        return [r[0] for r in rows]

    # -- artifacts ---------------------------------------------------------------------------

    async def get_artifact(
        self, run_id: str, stage: str, name: str, version: int | None = None
    ) -> ArtifactRecord:
        """One artifact version (the latest when ``version`` is None).

        ``NotFound("artifact", ...)`` lists the run's artifact names as ``stage/name``; an
        unknown run raises ``NotFound("run", ...)``.
        """
        async with self._db.read() as conn:
            if version is None:
                rows = await fetch_all(conn, q.SELECT_ARTIFACT_LATEST, (run_id, stage, name))
            else:
                params = (run_id, stage, name, version)
                rows = await fetch_all(conn, q.SELECT_ARTIFACT_VERSION, params)
            if rows:
                return artifact_from_row(rows[0])
            if not await fetch_all(conn, q.RUN_EXISTS, (run_id,)):
                raise await run_not_found(conn, run_id)
            names = await fetch_all(conn, q.ARTIFACT_NAMES, (run_id,))
        wanted = f"{stage}/{name}" + ("" if version is None else f"@{version}")
        raise NotFound("artifact", wanted, known=[f"{s}/{n}" for s, n in names])

    async def artifact_heads(self, run_id: str, chars: int) -> dict[tuple[str, str, int], str]:
        """The first ``chars`` characters of every artifact version of a run, in one query,
        keyed by (stage, name, version): previews without reading whole artifacts."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.ARTIFACT_HEADS, (chars, run_id))
        return {(r[0], r[1], int(r[2])): r[3] for r in rows}

    async def list_artifacts(self, run_id: str) -> list[ArtifactMeta]:
        """Every artifact version of a run (no content), ordered by stage, name, version."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.LIST_ARTIFACTS, (run_id,))
            if not rows and not await fetch_all(conn, q.RUN_EXISTS, (run_id,)):
                raise await run_not_found(conn, run_id)
        return [artifact_meta_from_row(r) for r in rows]

    # -- introspection -----------------------------------------------------------------------

    async def data_version(self) -> int:
        """SQLite's ``data_version`` for this connection.

        It changes when another connection (in any process) commits, and not for this
        connection's own commits: a cheap "did anything change?" poll.
        """
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.DATA_VERSION)
        return int(rows[0][0])

    async def schema(self) -> str:
        """The database schema as SQL, each table followed by its indexes."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, q.SCHEMA)
        return "".join(f"{r[0]};\n" for r in rows)


def _reject_duplicate_artifacts(artifacts: Sequence[NewArtifact]) -> None:
    seen: set[tuple[str, str, int]] = set()
    for art in artifacts:
        key = (art.stage, art.name, art.version)
        if key in seen:
            raise InvalidState(f"artifact {art.key} appears twice in one append")
        seen.add(key)
