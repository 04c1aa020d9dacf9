"""Deterministic token counts for the stand-in: a request is cut into prompt blocks, each counted.

The real tokenizer is not available here, and the tests need numbers they can compute by hand,
so a block costs ``ceil(len(canonical JSON of the block) / 4)`` tokens. The canonical rendering
drops ``cache_control`` (a marker, not content) and sorts keys, so the same block always costs
the same, however the client ordered its keys.

The prompt is the sequence the real API caches over: every tool definition, then the system
blocks, then every content block of every message (a string content counts as one text block).
Messages carry no per-message overhead here.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

CHARS_PER_TOKEN = 4
DEFAULT_TTL = "5m"
TTLS = ("5m", "1h")


def canonical(value: Any) -> str:
    """Stable JSON text of a block without its ``cache_control`` marker."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def count_text(text: str) -> int:
    """Tokens of a piece of text: one per four characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_block(block: Any) -> int:
    """Tokens of one content block or tool definition."""
    return count_text(canonical(block))


@dataclass(frozen=True)
class PromptBlock:
    """One cacheable unit of the prompt.

    ``digest`` chains every block before it (so equal digests mean equal prefixes) and
    ``breakpoint`` is the time-to-live of a ``cache_control`` marker on it, or None.
    """

    where: str  # e.g. "tools[0]", "system[1]", "messages[2].content[0]"
    tokens: int
    digest: str
    breakpoint: str | None = None


def _ttl(marker: Any) -> str | None:
    if not isinstance(marker, dict):
        return None
    ttl = marker.get("ttl", DEFAULT_TTL)
    return ttl if ttl in TTLS else DEFAULT_TTL


def _content_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return list(content)
    return []


def prompt_blocks(body: Json) -> list[PromptBlock]:
    """The request's prompt as blocks in cache order: tools, system, messages.

    A top-level ``cache_control`` puts a breakpoint on the last block of the last message (the
    real API's automatic caching); an explicit marker already there keeps its own ttl.
    """
    raw: list[tuple[str, Any, str | None]] = []
    for i, tool in enumerate(body.get("tools") or []):
        raw.append((f"tools[{i}]", tool, _ttl(tool.get("cache_control"))))
    system = body.get("system")
    for i, block in enumerate(_content_blocks(system)):
        marker = block.get("cache_control") if isinstance(block, dict) else None
        raw.append((f"system[{i}]", block, _ttl(marker)))
    for m, message in enumerate(body.get("messages") or []):
        role = message.get("role", "user")
        for c, block in enumerate(_content_blocks(message.get("content"))):
            marker = block.get("cache_control") if isinstance(block, dict) else None
            # the role is part of what is cached, not of what is counted
            raw.append((f"messages[{m}].content[{c}]", (role, block), _ttl(marker)))
    top = _ttl(body.get("cache_control"))
    if top is not None and raw and raw[-1][0].startswith("messages"):
        where, item, ttl = raw[-1]
        raw[-1] = (where, item, ttl or top)

    blocks: list[PromptBlock] = []
    digest = hashlib.sha256()
    for where, item, ttl in raw:
        if isinstance(item, tuple):
            role, block = item
            text = canonical(block)
            digest.update(f"{role}\x00{text}\x01".encode())
        else:
            text = canonical(item)
            digest.update(f"{where.split('[')[0]}\x00{text}\x01".encode())
        blocks.append(PromptBlock(where, count_text(text), digest.copy().hexdigest(), ttl))
    return blocks


def prompt_tokens(body: Json) -> int:
    """All prompt tokens of a request (what ``count_tokens`` answers)."""
    return sum(b.tokens for b in prompt_blocks(body))


def output_tokens(content: list[Json]) -> int:
    """Tokens of a reply's content blocks."""
    return sum(count_block(b) for b in content)
