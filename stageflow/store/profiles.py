"""The learning profiles' tables (migration 6): ``store.profiles``.

Rows only; what a sample means and how a key is summed up is ``stageflow.learning``'s, passed in
as the ``aggregate`` function, so every write recomputes the keys it touched inside its own
transaction (two processes recording attempts of one key never lose each other's samples).

- ``profile_samples``: one row per attempt whose verdict is final, keyed by run, stage, attempt
  (writing one twice replaces it: recording is idempotent);
- ``profiles``: one row per agent x task type x model;
- ``profile_progress``: the log position up to which each run has been read;
- ``profile_state.generation``: bumped by every write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

from stageflow.store.connection import fetch_all

if TYPE_CHECKING:
    import aiosqlite

    from stageflow.store.database import Database

__all__ = ["ProfileRow", "ProfileStore", "SampleRow"]


@dataclass(frozen=True)
class SampleRow:
    """One attempt with a final verdict (``result``: success, rework or failure)."""

    run_id: str
    stage: str
    attempt: int
    template: str
    agent: str
    task_type: str
    model: str
    result: str
    tokens: int
    cost_usd: float
    duration_s: float
    at: float
    explored: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agent, self.task_type, self.model)


@dataclass(frozen=True)
class ProfileRow:
    """The summary of one agent x task type x model."""

    agent: str
    task_type: str
    model: str
    executions: int
    successes: int
    reworks: int
    failures: int
    tokens_mean: float
    tokens_p90: float
    cost_mean_usd: float
    cost_p90_usd: float
    duration_mean_s: float
    last_at: float


Aggregate = Callable[[Sequence[SampleRow]], ProfileRow | None]  # None: no usable sample

_SAMPLE_COLUMNS = (
    "run_id, stage, attempt, template, agent, task_type, model, result, tokens, cost_usd, "
    "duration_s, at, explored"
)
_PROFILE_COLUMNS = (
    "agent, task_type, model, executions, successes, reworks, failures, tokens_mean, tokens_p90, "
    "cost_mean_usd, cost_p90_usd, duration_mean_s, last_at"
)
_PUT_SAMPLE = (
    f"INSERT OR REPLACE INTO profile_samples ({_SAMPLE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
)
_PUT_PROFILE = (
    f"INSERT OR REPLACE INTO profiles ({_PROFILE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
)
_KEY_SAMPLES = (
    f"SELECT {_SAMPLE_COLUMNS} FROM profile_samples WHERE agent = ? AND task_type = ? "
    "AND model = ? ORDER BY at, run_id, stage, attempt"
)
_ALL_SAMPLES = f"SELECT {_SAMPLE_COLUMNS} FROM profile_samples ORDER BY at, run_id, stage, attempt"
# never backwards: two processes catching up one run write the same samples, and the slower
# one must not move the read position back
_PUT_PROGRESS = (
    "INSERT INTO profile_progress (run_id, seq) VALUES (?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET seq = max(seq, excluded.seq)"
)
_RUN_IDS = "SELECT run_id FROM runs ORDER BY created_at, run_id"
_BEHIND = (
    "SELECT r.run_id, r.last_seq, COALESCE(p.seq, 0) FROM runs r "
    "LEFT JOIN profile_progress p ON p.run_id = r.run_id "
    "WHERE r.last_seq > COALESCE(p.seq, 0) ORDER BY r.created_at"
)
_DROP_PROFILE = "DELETE FROM profiles WHERE agent = ? AND task_type = ? AND model = ?"
_PROGRESS = "SELECT seq FROM profile_progress WHERE run_id = ?"
_GENERATION = "SELECT generation FROM profile_state WHERE id = 1"
_BUMP = "UPDATE profile_state SET generation = generation + 1"


def _sample(row: Sequence[Any]) -> SampleRow:
    return SampleRow(
        run_id=row[0],
        stage=row[1],
        attempt=int(row[2]),
        template=row[3],
        agent=row[4],
        task_type=row[5],
        model=row[6],
        result=row[7],
        tokens=int(row[8]),
        cost_usd=float(row[9]),
        duration_s=float(row[10]),
        at=float(row[11]),
        explored=bool(row[12]),
    )


def _profile(row: Sequence[Any]) -> ProfileRow:
    return ProfileRow(
        row[0],
        row[1],
        row[2],
        int(row[3]),
        int(row[4]),
        int(row[5]),
        int(row[6]),
        *(float(v) for v in row[7:13]),
    )


async def _put_profile(
    conn: aiosqlite.Connection, key: tuple[str, str, str], row: ProfileRow | None
) -> None:
    if row is None:  # no usable sample left under the key
        await conn.execute(_DROP_PROFILE, key)
    else:
        await conn.execute(_PUT_PROFILE, astuple(row))


class ProfileStore:
    """The profile tables on a ``Store``'s database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def read_only(self) -> bool:
        return self._db.read_only

    async def record(
        self, samples: Sequence[SampleRow], progress: Mapping[str, int], aggregate: Aggregate
    ) -> int:
        """Add ``samples``, recompute the keys they touch, move each run's read position to
        ``progress[run_id]``; one transaction. Returns the generation it wrote."""
        async with self._db.write() as conn:
            await self._put(conn, samples, progress)
            for key in sorted({s.key for s in samples}):
                rows = [_sample(r) for r in await fetch_all(conn, _KEY_SAMPLES, key)]
                await _put_profile(conn, key, aggregate(rows))
            if samples:  # only a changed sample changes what readers hold
                await conn.execute(_BUMP)
            return int((await fetch_all(conn, _GENERATION))[0][0])

    async def replace_all(
        self, samples: Sequence[SampleRow], progress: Mapping[str, int], aggregate: Aggregate
    ) -> int:
        """Replace every table's contents (a rebuild from the logs); one transaction, so
        readers see the old profiles or the new ones, never a mix."""
        async with self._db.write() as conn:
            for table in ("profile_samples", "profiles", "profile_progress"):
                await conn.execute(f"DELETE FROM {table}")  # fixed names
            await self._put(conn, samples, progress)
            by_key: dict[tuple[str, str, str], list[SampleRow]] = {}
            for s in sorted(samples, key=lambda s: (s.at, s.run_id, s.stage, s.attempt)):
                by_key.setdefault(s.key, []).append(s)
            for key in sorted(by_key):
                await _put_profile(conn, key, aggregate(by_key[key]))
            await conn.execute(_BUMP)
            return int((await fetch_all(conn, _GENERATION))[0][0])

    async def _put(
        self, conn: aiosqlite.Connection, samples: Iterable[SampleRow], progress: Mapping[str, int]
    ) -> None:
        rows = [astuple(s) for s in samples]
        if rows:
            await conn.executemany(_PUT_SAMPLE, rows)
        if progress:
            await conn.executemany(_PUT_PROGRESS, sorted(progress.items()))

    async def samples(self) -> list[SampleRow]:
        """Every sample, oldest first."""
        async with self._db.read() as conn:
            return [_sample(r) for r in await fetch_all(conn, _ALL_SAMPLES)]

    async def profiles(self) -> list[ProfileRow]:
        """Every profile row, by key."""
        async with self._db.read() as conn:
            rows = await fetch_all(
                conn, f"SELECT {_PROFILE_COLUMNS} FROM profiles ORDER BY agent, task_type, model"
            )
        return [_profile(r) for r in rows]

    async def behind(self) -> list[tuple[str, int, int]]:
        """Runs whose log goes past what was read: (run id, last seq, seq read), oldest first."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _BEHIND)
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    async def run_ids(self) -> list[str]:
        """Every run, oldest first (what a rebuild reads)."""
        async with self._db.read() as conn:
            return [r[0] for r in await fetch_all(conn, _RUN_IDS)]

    async def progress(self, run_id: str) -> int:
        """The log position up to which ``run_id`` was read (0: not yet)."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _PROGRESS, (run_id,))
        return int(rows[0][0]) if rows else 0

    async def generation(self) -> int:
        """Changes with every write of the profile tables (by any process)."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _GENERATION)
        return int(rows[0][0]) if rows else 0
