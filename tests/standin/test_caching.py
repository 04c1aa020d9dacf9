"""The prompt-cache simulation on its own: ttl, refresh, models, lookback, the sums."""

from __future__ import annotations

from typing import Any

from tests.standin.caching import PromptCache
from tests.standin.tokens import prompt_blocks, prompt_tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text(n: int, marker: dict[str, str] | None = None) -> dict[str, Any]:
    """A text block of exactly ``n`` tokens, optionally a breakpoint."""
    block: dict[str, Any] = {"type": "text", "text": "y" * (4 * n - 25)}
    if marker is not None:
        block["cache_control"] = marker
    return block


EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


def body(system: list[dict[str, Any]], *user: dict[str, Any], top: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "m",
        "max_tokens": 1,
        "system": system,
        "messages": [{"role": "user", "content": list(user)}],
    }
    if top:
        out["cache_control"] = EPHEMERAL
    return out


def test_a_five_minute_entry_expires_and_a_read_refreshes_it() -> None:
    clock = Clock()
    cache = PromptCache(clock=clock)
    req = body([text(100, EPHEMERAL)], text(10))
    assert cache.account("m", prompt_blocks(req)).cache_write_5m_tokens == 100
    clock.now += 299
    assert cache.account("m", prompt_blocks(req)).cache_read_input_tokens == 100  # refreshed
    clock.now += 299
    assert cache.account("m", prompt_blocks(req)).cache_read_input_tokens == 100
    clock.now += 301
    again = cache.account("m", prompt_blocks(req))
    assert (again.cache_read_input_tokens, again.cache_write_5m_tokens) == (0, 100)


def test_a_one_hour_entry_outlives_five_minutes() -> None:
    clock = Clock()
    cache = PromptCache(clock=clock)
    req = body([text(100, HOUR)], text(10))
    assert cache.account("m", prompt_blocks(req)).cache_write_1h_tokens == 100
    clock.now += 3000
    assert cache.account("m", prompt_blocks(req)).cache_read_input_tokens == 100


def test_entries_belong_to_one_model() -> None:
    cache = PromptCache()
    req = body([text(100, EPHEMERAL)], text(10))
    cache.account("model-a", prompt_blocks(req))
    other = cache.account("model-b", prompt_blocks(req))
    assert (other.cache_read_input_tokens, other.cache_write_5m_tokens) == (0, 100)


def test_a_changed_block_before_the_breakpoint_misses() -> None:
    cache = PromptCache()
    cache.account("m", prompt_blocks(body([text(50), text(100, EPHEMERAL)], text(10))))
    changed = cache.account("m", prompt_blocks(body([text(51), text(100, EPHEMERAL)], text(10))))
    assert changed.cache_read_input_tokens == 0
    assert changed.cache_write_5m_tokens == 151


def test_lookback_finds_an_entry_at_most_twenty_blocks_back() -> None:
    cache = PromptCache()
    head = text(100, EPHEMERAL)
    cache.account("m", prompt_blocks(body([head])))
    plain = {k: v for k, v in head.items() if k != "cache_control"}
    near = body([plain], *[text(7) for _ in range(18)], text(8, EPHEMERAL))  # 19 blocks later
    assert cache.account("m", prompt_blocks(near)).cache_read_input_tokens == 100
    cache.clear()
    cache.account("m", prompt_blocks(body([head])))
    far = body([plain], *[text(7) for _ in range(19)], text(8, EPHEMERAL))  # 20 blocks later
    assert cache.account("m", prompt_blocks(far)).cache_read_input_tokens == 0


def test_the_parts_always_add_up_to_the_prompt() -> None:
    cache = PromptCache()
    requests = [
        body([text(30, HOUR), text(40, EPHEMERAL)], text(10), text(20, EPHEMERAL), text(5 + 7)),
        body([text(30, HOUR), text(40, EPHEMERAL)], text(10), text(21, EPHEMERAL), top=True),
        body([text(30, HOUR), text(41)], text(10), top=True),
        body([text(30), text(40)], text(10)),
    ]
    for req in requests:
        usage = cache.account("m", prompt_blocks(req))
        assert usage.total == prompt_tokens(req)
        assert (
            min(
                usage.input_tokens,
                usage.cache_read_input_tokens,
                usage.cache_write_5m_tokens,
                usage.cache_write_1h_tokens,
            )
            >= 0
        )


def test_a_disabled_cache_counts_everything_as_input() -> None:
    cache = PromptCache(enabled=False)
    usage = cache.account("m", prompt_blocks(body([text(100, EPHEMERAL)], text(10))))
    assert (usage.input_tokens, usage.cache_creation_input_tokens) == (110, 0)
