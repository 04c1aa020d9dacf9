"""The plain records the store reads and writes, and how SQL rows map onto them.

Rows are fetched as tuples (no ``Row`` factory: it is measurably slower), so each record has a
column list used in its SELECTs and a constructor that unpacks a tuple in that order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

#: Run statuses after which nothing more happens to a run.
TERMINAL_STATUSES: tuple[str, ...] = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunRow:
    """One run's projection row: identity, status, log head, lease and money."""

    run_id: str
    template: str
    task: str
    status: str
    created_at: float
    updated_at: float
    last_seq: int
    head_hash: str
    owner: str | None
    lease_expires_at: float | None
    spent_usd: float
    budget_usd: float | None
    runner: str

    @property
    def active(self) -> bool:
        """True while the run is not completed, failed or cancelled."""
        return self.status not in TERMINAL_STATUSES


RUN_COLUMNS = (
    "run_id, template, task, status, created_at, updated_at, last_seq, head_hash, owner, "
    "lease_expires_at, spent_usd, budget_usd, runner"
)


def run_from_row(row: Any) -> RunRow:
    return RunRow(*row)


@dataclass(frozen=True)
class RunSummary:
    """The projection columns a caller updates together with each append."""

    status: str
    spent_usd: float
    budget_usd: float | None


@dataclass(frozen=True)
class NewArtifact:
    """An artifact version to write in the same transaction as the events that reference it.

    ``size`` and ``sha256`` are what the store records, so the caller can put the same values
    into the ``ArtifactRef`` of its ``AttemptFinished`` event.
    """

    stage: str
    name: str
    version: int
    content: str
    attempt: int

    @property
    def size(self) -> int:
        """Size in bytes of the UTF-8 encoded content."""
        return len(self.content.encode("utf-8"))

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the UTF-8 encoded content."""
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.name}@{self.version}"


@dataclass(frozen=True)
class ArtifactMeta:
    """A stored artifact version without its content."""

    run_id: str
    stage: str
    name: str
    version: int
    size: int
    sha256: str
    attempt: int
    created_at: float


ARTIFACT_META_COLUMNS = "run_id, stage, name, version, size, sha256, attempt, created_at"


def artifact_meta_from_row(row: Any) -> ArtifactMeta:
    return ArtifactMeta(*row)


@dataclass(frozen=True)
class ArtifactRecord:
    """A stored artifact version with its content."""

    run_id: str
    stage: str
    name: str
    version: int
    content: str
    size: int
    sha256: str
    attempt: int
    created_at: float

    @property
    def meta(self) -> ArtifactMeta:
        return ArtifactMeta(
            run_id=self.run_id,
            stage=self.stage,
            name=self.name,
            version=self.version,
            size=self.size,
            sha256=self.sha256,
            attempt=self.attempt,
            created_at=self.created_at,
        )


ARTIFACT_COLUMNS = "run_id, stage, name, version, content, size, sha256, attempt, created_at"


def artifact_from_row(row: Any) -> ArtifactRecord:
    return ArtifactRecord(*row)


#: Columns of ``model_requests`` after (run_id, stage, attempt, seq, at).
REQUEST_COLUMNS = (
    "model_requested, model, input_tokens, output_tokens, cache_write_5m_tokens, "
    "cache_write_1h_tokens, cache_read_tokens, cost_usd, priced, request_id, reserved_usd, done"
)


@dataclass(frozen=True)
class RequestRow:
    """One model request in the cost ledger."""

    stage: str
    attempt: int
    model_requested: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    request_id: str | None = None
    reserved_usd: float = 0.0  # what the caps held while it was in flight
    done: bool = True  # False: sent, no usage recorded (its process may have died)
    seq: int = 0  # assigned by the store
    at: float = 0.0

    @property
    def spent_usd(self) -> float:
        """What the request counts against the caps: its cost, or its reservation while its
        usage is unknown (a crash between sending and recording it)."""
        return self.cost_usd if self.done else max(self.cost_usd, self.reserved_usd)

    def values(self) -> tuple[Any, ...]:
        """The REQUEST_COLUMNS values, in order."""
        return (
            self.model_requested,
            self.model,
            self.input_tokens,
            self.output_tokens,
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.cache_read_tokens,
            self.cost_usd,
            int(self.priced),
            self.request_id,
            self.reserved_usd,
            int(self.done),
        )


def request_from_row(row: tuple[Any, ...]) -> RequestRow:
    """(stage, attempt, seq, at, *REQUEST_COLUMNS) -> RequestRow."""
    return RequestRow(
        stage=row[0],
        attempt=int(row[1]),
        seq=int(row[2]),
        at=float(row[3]),
        model_requested=row[4],
        model=row[5],
        input_tokens=int(row[6]),
        output_tokens=int(row[7]),
        cache_write_5m_tokens=int(row[8]),
        cache_write_1h_tokens=int(row[9]),
        cache_read_tokens=int(row[10]),
        cost_usd=float(row[11]),
        priced=bool(row[12]),
        request_id=row[13],
        reserved_usd=float(row[14]),
        done=bool(row[15]),
    )
