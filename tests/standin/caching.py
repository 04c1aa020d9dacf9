"""Prompt-cache simulation for the stand-in, close to the real API's documented behaviour.

- The prompt is cut into blocks in cache order (tools, system, messages; see ``tokens``); a
  block with ``cache_control`` is a breakpoint, and a top-level ``cache_control`` is one on the
  last block of the last message.
- A request **reads** the longest cached prefix it can find: at each breakpoint the cache is
  checked at that block and at up to ``lookback - 1`` block boundaries before it (the real
  API's 20-block lookback; this is what lets a moving top-level breakpoint hit the previous
  request's entry).
- Everything after the read, up to the last breakpoint, is **written**: an entry per breakpoint
  past the read, and its tokens count as 5-minute or 1-hour writes by the ttl of the breakpoint
  that closes the segment.
- What follows the last breakpoint is plain input.
- Entries are per model, live for their ttl and are refreshed when read. The clock is
  injectable, so expiry is testable without waiting.

Deliberate simplifications: there is **no minimum cacheable length** (the real API caches only
prefixes of at least 1024-4096 tokens depending on the model), so small test prompts cache too;
the 1h-before-5m ordering rule is not enforced; ``tool_choice``, images and thinking blocks do
not change the key beyond their own content.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.standin.tokens import PromptBlock

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
LOOKBACK_BLOCKS = 20


@dataclass(frozen=True)
class CacheUsage:
    """How one request's prompt tokens split; the four parts add up to the prompt's total."""

    input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def total(self) -> int:
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    def as_usage(self, output_tokens: int) -> dict[str, object]:
        """The Messages API ``usage`` object."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m_tokens,
                "ephemeral_1h_input_tokens": self.cache_write_1h_tokens,
            },
        }


class PromptCache:
    """Cached prefixes per model: ``account(model, blocks)`` splits a prompt and updates entries."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        lookback: int = LOOKBACK_BLOCKS,
        enabled: bool = True,
    ) -> None:
        self.clock = clock
        self.lookback = lookback
        self.enabled = enabled
        self._entries: dict[tuple[str, str], tuple[float, str]] = {}  # -> (expires, ttl)
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _live(self, model: str, digest: str, now: float) -> bool:
        entry = self._entries.get((model, digest))
        return entry is not None and entry[0] > now

    def account(self, model: str, blocks: Sequence[PromptBlock]) -> CacheUsage:
        """Split one request's prompt into read / written / plain input, and update the cache."""
        total = sum(b.tokens for b in blocks)
        marks = [i for i, b in enumerate(blocks) if b.breakpoint is not None]
        if not self.enabled or not marks:
            return CacheUsage(input_tokens=total)
        with self._lock:
            now = self.clock()
            read_end = -1  # index of the last block read from the cache
            for mark in marks:
                for i in range(mark, max(-1, mark - self.lookback), -1):
                    if i > read_end and self._live(model, blocks[i].digest, now):
                        read_end = i
                        break
            if read_end >= 0:  # a read refreshes the entry it hit
                _, ttl = self._entries[(model, blocks[read_end].digest)]
                self._entries[(model, blocks[read_end].digest)] = (now + TTL_SECONDS[ttl], ttl)
            written = {"5m": 0, "1h": 0}
            start = read_end + 1
            for mark in marks:
                if mark <= read_end:
                    continue
                ttl = blocks[mark].breakpoint or "5m"
                written[ttl] += sum(b.tokens for b in blocks[start : mark + 1])
                self._entries[(model, blocks[mark].digest)] = (now + TTL_SECONDS[ttl], ttl)
                start = mark + 1
        read = sum(b.tokens for b in blocks[: read_end + 1])
        return CacheUsage(
            input_tokens=total - read - written["5m"] - written["1h"],
            cache_read_input_tokens=read,
            cache_write_5m_tokens=written["5m"],
            cache_write_1h_tokens=written["1h"],
        )
