"""Turning events into ``events`` rows and back, with the hash chain intact.

What is stored is exactly what is hashed: ``at`` as REAL, ``actor``, and the payload as the
canonical JSON of ``event_payload(event)``, so an envelope rebuilt from its row recomputes to the
same hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from stageflow.errors import CorruptLog
from stageflow.events import (
    EVENT_ADAPTER,
    Envelope,
    Event,
    canonical_json,
    chain_hash,
    event_payload,
)

EventRow = tuple[str, int, float, str, str, str, str, str]


def seal_row(
    run_id: str, seq: int, at: float, actor: str, event: Event, prev_hash: str
) -> tuple[Envelope, EventRow]:
    """Seal one event (as ``events.seal`` does) and build its ``events`` row.

    The event is first round-tripped through its stored JSON form, so the returned envelope is
    exactly what ``envelope_from_row`` rebuilds later (a tuple in a free-form dict comes back
    as a list) and its hash is the one ``verify_chain`` recomputes.
    """
    stored = EVENT_ADAPTER.validate_json(canonical_json(event_payload(event)))
    payload = event_payload(stored)
    digest = chain_hash(prev_hash, run_id, seq, at, actor, payload)
    envelope = Envelope(
        run_id=run_id, seq=seq, at=at, actor=actor, event=stored, prev_hash=prev_hash, hash=digest
    )
    row = (run_id, seq, at, actor, stored.type, canonical_json(payload), prev_hash, digest)
    return envelope, row


def seal_rows(
    run_id: str, events: Sequence[Event], *, after_seq: int, prev_hash: str, at: float, actor: str
) -> tuple[list[Envelope], list[EventRow]]:
    """Seal consecutive events following the entry ``(after_seq, prev_hash)``."""
    envelopes: list[Envelope] = []
    rows: list[EventRow] = []
    for seq, event in enumerate(events, start=after_seq + 1):
        envelope, row = seal_row(run_id, seq, at, actor, event, prev_hash)
        envelopes.append(envelope)
        rows.append(row)
        prev_hash = envelope.hash
    return envelopes, rows


def envelope_from_row(run_id: str, row: tuple[Any, ...]) -> Envelope:
    """Rebuild an envelope from ``SELECT seq, at, actor, payload, prev_hash, hash``."""
    seq, at, actor, payload, prev_hash, digest = row
    try:
        event = EVENT_ADAPTER.validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else str(exc)
        raise CorruptLog(
            f"run '{run_id}': event log entry seq {seq} cannot be read ({first}); the database was "
            "altered outside stageflow or written by an incompatible version",
            run_id=run_id,
            seq=int(seq),
        ) from exc
    return Envelope(
        run_id=run_id,
        seq=seq,
        at=at,
        actor=actor,
        event=event,
        prev_hash=prev_hash,
        hash=digest,
    )
