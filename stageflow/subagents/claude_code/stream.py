"""Reading ``claude -p --output-format stream-json`` while it runs, and squaring the usage seen
on the stream with the CLI's own totals at the end.

Why a stream: with ``--output-format json`` the CLI prints its usage only when it exits, so a
timeout or a cancel (both kill it) lost the spend of every request it had already made. Each
model request is one assistant message; its usage is final when the message ends, and the
runner records it on the attempt's meter right then.

Why ``--include-partial-messages`` too: the ``assistant`` events (one per content block, so
several per message) carry the usage of the message's ``message_start``, whose
``output_tokens`` is a placeholder (1). The final counts arrive only in the raw
``message_delta`` stream events (cumulative, as in the Messages API). A message's usage is
therefore merged, field by field (the largest value wins), from its ``message_start``,
``message_delta`` and ``assistant`` events, keyed by message id so it is counted once. It ends
with its ``message_stop``; on a stream without raw events, with the next message of the same
(sub)agent; at the latest when the stream ends (``StreamReader.close``, after a kill too).

``unseen_usage`` then tops the ledger up to what the CLI's result counts per model (see there).
``StreamReader`` and ``unseen_usage`` are pure; ``StreamLedger`` puts their output on the
attempt's meter.

Shapes read from Claude Code 2.1.197 against the loopback Messages API stand-in::

    {"type": "stream_event", "parent_tool_use_id": null,
     "event": {"type": "message_start", "message": {"id", "model", "usage"}}}
    {"type": "stream_event", "event": {"type": "message_delta", "usage": {...}}}
    {"type": "stream_event", "event": {"type": "message_stop"}}
    {"type": "assistant", "message": {"id", "model", "usage", "content"}}
    {"type": "result", ...}   (the object ``--output-format json`` prints)
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from stageflow.engine.runner import AttemptMeter
from stageflow.models.client import RawUsage
from stageflow.models.pricing import PriceTable
from stageflow.subagents.claude_code.result import (
    CliResult,
    ModelUse,
    parse_result,
    reported_count,
)
from stageflow.usage import RequestUsage

__all__ = ["LineSplitter", "MessageUsage", "StreamLedger", "StreamReader", "unseen_usage"]

COST_TOLERANCE = 1e-9  # USD: float noise between the CLI's sums and ours
_TEXT_TAIL = 20  # non-JSON stdout lines kept to explain a failure


class LineSplitter:
    """Bytes in, complete lines out (a UTF-8 character never contains a newline byte)."""

    def __init__(self) -> None:
        self._rest = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes, without their newlines."""
        if b"\n" not in chunk:
            self._rest += chunk
            return []
        parts = chunk.split(b"\n")
        self._rest += parts[0]
        lines = [bytes(self._rest), *parts[1:-1]]
        self._rest = bytearray(parts[-1])
        return [line.decode("utf-8", "replace") for line in lines]

    def close(self) -> list[str]:
        """The last line, when the output did not end with a newline."""
        rest, self._rest = bytes(self._rest), bytearray()
        return [rest.decode("utf-8", "replace")] if rest else []


@dataclass
class MessageUsage:
    """One model request (an assistant message) and its usage as seen so far."""

    id: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # all cache writes ...
    cache_write_1h_tokens: int = 0  # ... of which with a 1-hour time to live

    def merge(self, usage: object) -> None:
        """Take the larger of each count (the stream's counts only grow)."""
        if not isinstance(usage, Mapping):
            return
        self.input_tokens = max(self.input_tokens, reported_count(usage.get("input_tokens")))
        self.output_tokens = max(self.output_tokens, reported_count(usage.get("output_tokens")))
        self.cache_read_tokens = max(
            self.cache_read_tokens, reported_count(usage.get("cache_read_input_tokens"))
        )
        self.cache_write_tokens = max(
            self.cache_write_tokens, reported_count(usage.get("cache_creation_input_tokens"))
        )
        created = usage.get("cache_creation")
        if isinstance(created, Mapping):
            hour = reported_count(created.get("ephemeral_1h_input_tokens"))
            self.cache_write_1h_tokens = max(self.cache_write_1h_tokens, hour)

    def raw(self) -> RawUsage:
        """The counts as the pricing module takes them."""
        hour = min(self.cache_write_1h_tokens, self.cache_write_tokens)
        return RawUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_write_5m_tokens=self.cache_write_tokens - hour,
            cache_write_1h_tokens=hour,
            cache_read_tokens=self.cache_read_tokens,
        )

    @property
    def empty(self) -> bool:
        """No tokens at all (e.g. the CLI's synthetic error messages)."""
        return not (
            self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_write_tokens
        )


class StreamReader:
    """Folds the CLI's stream-json lines: finished messages out, the result object kept."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self._open: dict[str, MessageUsage] = {}
        self._done: set[str] = set()
        self._current: dict[str | None, str] = {}  # parent_tool_use_id -> its open message
        self._text: deque[str] = deque(maxlen=_TEXT_TAIL)

    @property
    def text(self) -> str:
        """The last lines of stdout that were not JSON (what a crashing CLI said there)."""
        return "\n".join(self._text)

    def feed(self, line: str) -> list[MessageUsage]:
        """Take one stdout line; returns the messages it finished."""
        stripped = line.strip()
        if not stripped:
            return []
        try:
            data = json.loads(stripped) if stripped.startswith("{") else None
        except (json.JSONDecodeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            self._text.append(stripped)
            return []
        kind = data.get("type")
        parent = data.get("parent_tool_use_id")
        key = parent if isinstance(parent, str) else None
        if kind == "result":
            self.result = data
            return self.close()
        if kind == "assistant":
            return self._message(key, data.get("message"))
        if kind != "stream_event" or not isinstance(data.get("event"), dict):
            return []
        event: dict[str, Any] = data["event"]
        etype = event.get("type")
        if etype == "message_start":
            return self._message(key, event.get("message"))
        current = self._open.get(self._current.get(key, ""))
        if etype == "message_delta" and current is not None:
            current.merge(event.get("usage"))
        elif etype == "message_stop" and current is not None:
            return self._finish(key)
        return []

    def close(self) -> list[MessageUsage]:
        """End of the stream (or a kill): every message still open, with what it used so far."""
        self._current.clear()
        ended = list(self._open.values())
        self._done.update(self._open)
        self._open.clear()
        return ended

    def _message(self, key: str | None, message: object) -> list[MessageUsage]:
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            return []
        mid: str = message["id"]
        if mid in self._done:
            return []  # a late duplicate of a message already counted
        finished = self._finish(key) if self._current.get(key, mid) != mid else []
        usage = self._open.get(mid)
        if usage is None:
            model = message.get("model")
            usage = MessageUsage(mid, model if isinstance(model, str) else "")
            self._open[mid] = usage
        usage.merge(message.get("usage"))
        self._current[key] = mid
        return finished

    def _finish(self, key: str | None) -> list[MessageUsage]:
        mid = self._current.pop(key, None)
        usage = self._open.pop(mid, None) if mid is not None else None
        if usage is None:
            return []
        self._done.add(usage.id)
        return [usage]


# -- squaring the ledger with the CLI's totals -----------------------------------------------

_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens")


def _base(model: str) -> str:
    return _SUFFIX.sub("", model)


def _writes(entry: RequestUsage | ModelUse) -> int:
    return entry.cache_write_5m_tokens + entry.cache_write_1h_tokens


def _top_up(
    model: str,
    cli: Sequence[ModelUse],
    seen: Sequence[RequestUsage],
    *,
    model_requested: str | None,
    request_id: str | None,
    cost: float,
) -> RequestUsage | None:
    """One entry with what ``cli`` counts beyond ``seen`` (None when nothing is missing)."""

    def beyond(name: str) -> int:
        theirs: int = sum(getattr(u, name) for u in cli)
        ours: int = sum(getattr(r, name) for r in seen)
        return max(0, theirs - ours)

    counts = {name: beyond(name) for name in _FIELDS}
    # the CLI splits its cache writes 5m/1h by a session-wide ratio: compare the totals
    writes = max(0, sum(_writes(u) for u in cli) - sum(_writes(r) for r in seen))
    hour = min(writes, beyond("cache_write_1h_tokens"))
    if cost <= COST_TOLERANCE and writes == 0 and not any(counts.values()):
        return None
    return RequestUsage(
        model=model,
        model_requested=model_requested or model,
        cache_write_5m_tokens=writes - hour,
        cache_write_1h_tokens=hour,
        cost_usd=cost if cost > COST_TOLERANCE else 0.0,
        request_id=request_id,
        **counts,
    )


def unseen_usage(
    cli: Sequence[ModelUse],
    recorded: Sequence[RequestUsage],
    *,
    model_requested: str | None,
    request_id: str | None,
    fallback_model: str | None = None,
) -> list[RequestUsage]:
    """Ledger entries for what the CLI's result counts beyond the messages recorded from the
    stream, so that per model the ledger ends at the larger of the two and nothing is counted
    twice.

    The stream's messages are priced with our price table as they arrive (the caps see them at
    once, and a killed CLI's spend is kept). The result's ``modelUsage`` is the CLI's own
    count and price: it also covers requests that never appear on the stream (the CLI's side
    requests), models our table does not price, and pricing the table lacks (a long-context
    premium). So each model is topped up by the tokens and the dollars the CLI counts beyond
    what was recorded for it; where our price was the higher one, ours stays (the ledger never
    gets a negative entry).

    Models are matched by name, ignoring a ``-YYYYMMDD``/``-latest`` suffix. When the names
    still do not line up (the top-ups together would exceed the CLI's total less what was
    recorded), one entry for the whole difference replaces them, charged to
    ``fallback_model`` (the model that did the work).
    """
    by_model: dict[str, list[ModelUse]] = {}
    for use in cli:
        by_model.setdefault(_base(use.model), []).append(use)
    entries: list[RequestUsage] = []
    for base, uses in by_model.items():
        seen = [r for r in recorded if _base(r.model) == base]
        cost = sum(u.cost_usd for u in uses) - sum(r.cost_usd for r in seen)
        entry = _top_up(
            uses[0].model,
            uses,
            seen,
            model_requested=model_requested,
            request_id=request_id,
            cost=cost,
        )
        if entry is not None:
            entries.append(entry)
    total = sum(u.cost_usd for u in cli) - sum(r.cost_usd for r in recorded)
    if sum(e.cost_usd for e in entries) <= max(total, 0.0) + COST_TOLERANCE:
        return entries
    model = fallback_model or model_requested or (cli[0].model if cli else "unknown")
    whole = _top_up(
        model,
        cli,
        recorded,
        model_requested=model_requested,
        request_id=request_id,
        cost=total,
    )
    return [whole] if whole is not None else []


class StreamLedger:
    """Puts what the stream shows on the attempt's meter as it happens.

    ``feed`` each stdout line: the messages it finishes are priced (``prices``) and recorded at
    once. ``close`` after the process is gone records the messages a kill cut short (their
    input was sent and paid for). ``top_up`` adds ``unseen_usage`` once the result is in.
    Recording is shielded from cancellation: a spend that happened is never dropped halfway.
    """

    def __init__(self, meter: AttemptMeter, prices: PriceTable, model_requested: str | None):
        self.meter = meter
        self.prices = prices
        self.model_requested = model_requested
        self.reader = StreamReader()
        self.recorded: list[RequestUsage] = []

    @property
    def result(self) -> CliResult | None:
        """The CLI's result object, once it has printed one."""
        data = self.reader.result
        return None if data is None else parse_result(data)

    async def feed(self, line: str) -> None:
        """One stdout line."""
        await self._messages(self.reader.feed(line))

    async def close(self) -> None:
        """The stream ended (or the process was killed)."""
        await self._messages(self.reader.close())

    async def top_up(self, parsed: CliResult) -> None:
        """Square the ledger with the CLI's own per-model totals (see ``unseen_usage``)."""
        models = parsed.models
        if not models and parsed.total_cost_usd > 0:  # no per-model split: charge the model used
            name = self.answered_model or self.model_requested or "unknown"
            models = [ModelUse(model=name, cost_usd=parsed.total_cost_usd)]
        entries = unseen_usage(
            models,
            self.recorded,
            model_requested=self.model_requested,
            request_id=parsed.session_id,
            fallback_model=parsed.answered_model or self.answered_model,
        )
        await self._record(entries)

    @property
    def answered_model(self) -> str | None:
        """The model with the most output tokens among the recorded messages."""
        if not self.recorded:
            return None
        return max(self.recorded, key=lambda r: r.output_tokens).model

    async def _messages(self, messages: list[MessageUsage]) -> None:
        entries = []
        for message in messages:
            if message.empty:
                continue
            model = message.model or self.model_requested or "unknown"
            entries.append(
                self.prices.request_usage(
                    model=model,
                    model_requested=self.model_requested or model,
                    usage=message.raw(),
                    request_id=message.id,
                )
            )
        await self._record(entries)

    async def _record(self, entries: list[RequestUsage]) -> None:
        if not entries:
            return
        with anyio.CancelScope(shield=True):
            for entry in entries:
                self.recorded.append(entry)
                await self.meter.record(entry)
