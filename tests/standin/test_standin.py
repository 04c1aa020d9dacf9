"""The stand-in driven by the real ``anthropic.AsyncAnthropic`` client over loopback HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import anyio
import pytest
from anthropic import AsyncAnthropic

from tests.standin import StandIn, count_block, text_block, tool_use_block
from tests.standin.wire import Reply, message

pytestmark = pytest.mark.anyio

MODEL = "claude-test-1"


def text_of_tokens(n: int) -> str:
    """Text whose text block costs exactly ``n`` tokens (the block's JSON adds 25 chars)."""
    assert n >= 7, "an empty text block already costs 7 tokens"
    return "x" * (4 * n - 25)


def tool_of_tokens(name: str, n: int) -> dict[str, Any]:
    """A tool definition costing exactly ``n`` tokens (83 chars of JSON + the name's extra)."""
    desc = "d" * (4 * n - 83 - (len(name) - 6))
    return {
        "name": name,
        "description": desc,
        "input_schema": {"type": "object", "properties": {}},
    }


@pytest.fixture
def api() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture
async def client(api: StandIn) -> AsyncIterator[AsyncAnthropic]:
    c = AsyncAnthropic(api_key="test", base_url=api.base_url, max_retries=2, timeout=10)
    try:
        yield c
    finally:
        await c.close()


def test_token_helpers_cost_what_the_tests_assume() -> None:
    assert count_block(text_block(text_of_tokens(100))) == 100
    assert count_block(tool_of_tokens("lookup", 50)) == 50
    assert count_block(tool_of_tokens("search_docs", 30)) == 30
    # cache_control is a marker, not content
    marked = {**text_block(text_of_tokens(7)), "cache_control": {"type": "ephemeral"}}
    assert count_block(marked) == 7


async def test_json_round_trip_echoes_the_model_and_counts_tokens(
    api: StandIn, client: AsyncAnthropic
) -> None:
    api.push_message([text_block("Hello.")])
    with anyio.fail_after(10):
        reply = await client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.model == MODEL
    assert reply.content[0].type == "text" and reply.content[0].text == "Hello."
    assert reply.stop_reason == "end_turn"
    # '{"text":"hi","type":"text"}' is 27 chars -> 7 tokens; the reply block 31 chars -> 8
    assert reply.usage.input_tokens == 7
    assert reply.usage.output_tokens == 8
    assert reply.usage.cache_read_input_tokens == 0
    assert reply.usage.cache_creation_input_tokens == 0
    assert reply._request_id is not None and reply._request_id.startswith("req_")
    [rec] = api.requests
    assert rec.path == "/v1/messages" and rec.status == 200
    assert rec.headers["authorization"] == "Bearer test"
    assert rec.body["messages"] == [{"role": "user", "content": "hi"}]
    assert rec.usage == reply.usage.model_dump(exclude_none=True)


async def test_answered_model_mapping_reports_another_model(
    api: StandIn, client: AsyncAnthropic
) -> None:
    api.answered_model[MODEL] = "claude-fallback-9"
    api.push_message([text_block("ok")])
    with anyio.fail_after(10):
        reply = await client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.model == "claude-fallback-9"
    assert api.totals().by_model == {"claude-fallback-9": 1}


async def test_streaming_rebuilds_text_and_tool_use_with_full_usage(
    api: StandIn, client: AsyncAnthropic
) -> None:
    api.push_message(
        [text_block("Looking."), tool_use_block("toolu_1", "Glob", {"pattern": "**/*.py"})],
        "tool_use",
    )
    system = [{**text_block(text_of_tokens(40)), "cache_control": {"type": "ephemeral"}}]
    with anyio.fail_after(10):
        async with client.messages.stream(
            model=MODEL,
            max_tokens=64,
            system=system,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": text_of_tokens(10)}],
        ) as stream:
            chunks = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert chunks == ["Looking."]
    assert final.stop_reason == "tool_use"
    assert final.content[1].type == "tool_use"
    assert final.content[1].input == {"pattern": "**/*.py"}
    assert final.usage.cache_creation_input_tokens == 40
    assert final.usage.input_tokens == 10
    assert final.usage.output_tokens == api.requests[0].usage["output_tokens"]  # type: ignore[index]
    assert api.requests[0].body["stream"] is True


async def test_an_injected_overload_is_retried_by_the_sdk(
    api: StandIn, client: AsyncAnthropic
) -> None:
    api.push_error(529, "overloaded_error", headers={"retry-after-ms": "1"})
    api.push_message([text_block("after the retry")])
    with anyio.fail_after(10):
        reply = await client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.content[0].text == "after the retry"  # type: ignore[union-attr]
    assert [r.status for r in api.requests] == [529, 200]
    assert [r.headers["x-stainless-retry-count"] for r in api.requests] == ["0", "1"]
    assert api.totals().requests == 1  # the error carries no usage


async def test_exhausted_retries_surface_the_typed_error(api: StandIn) -> None:
    for _ in range(2):
        api.push_error(429, "rate_limit_error", "slow down", headers={"retry-after-ms": "1"})
    c = AsyncAnthropic(api_key="test", base_url=api.base_url, max_retries=1, timeout=10)
    try:
        with anyio.fail_after(10), pytest.raises(anthropic.RateLimitError) as info:
            await c.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await c.close()
    assert info.value.status_code == 429
    assert info.value.type == "rate_limit_error"
    assert len(api.requests) == 2


async def test_a_shared_prefix_is_written_once_then_read(
    api: StandIn, client: AsyncAnthropic
) -> None:
    tools = [tool_of_tokens("lookup", 50)]
    system = [{**text_block(text_of_tokens(100)), "cache_control": {"type": "ephemeral"}}]

    async def ask(question_tokens: int) -> anthropic.types.Message:
        api.push_message([text_block("ok")])
        return await client.messages.create(
            model=MODEL,
            max_tokens=8,
            tools=tools,  # type: ignore[arg-type]
            system=system,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": text_of_tokens(question_tokens)}],
        )

    with anyio.fail_after(10):
        first = await ask(20)
        second = await ask(30)
    assert first.usage.cache_creation_input_tokens == 150  # tools 50 + system 100
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == 20
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == 150
    assert second.usage.input_tokens == 30
    totals = api.totals()
    assert (totals.input_tokens, totals.cache_read_tokens, totals.cache_write_5m_tokens) == (
        50,
        150,
        150,
    )
    assert totals.prompt_tokens == 350


async def test_one_hour_and_five_minute_writes_are_split_by_the_breakpoint_ttl(
    api: StandIn, client: AsyncAnthropic
) -> None:
    tools = [{**tool_of_tokens("lookup", 50), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    system = [{**text_block(text_of_tokens(100)), "cache_control": {"type": "ephemeral"}}]
    api.push_message([text_block("ok")])
    with anyio.fail_after(10):
        reply = await client.messages.create(
            model=MODEL,
            max_tokens=8,
            tools=tools,  # type: ignore[arg-type]
            system=system,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": text_of_tokens(9)}],
        )
    assert reply.usage.cache_creation is not None
    assert reply.usage.cache_creation.ephemeral_1h_input_tokens == 50
    assert reply.usage.cache_creation.ephemeral_5m_input_tokens == 100
    assert reply.usage.cache_creation_input_tokens == 150
    assert reply.usage.input_tokens == 9


async def test_top_level_cache_control_follows_a_growing_conversation(
    api: StandIn, client: AsyncAnthropic
) -> None:
    messages: list[Any] = [{"role": "user", "content": text_of_tokens(100)}]
    usages = []
    for turn in range(3):
        api.push_message([text_block(text_of_tokens(10))])
        with anyio.fail_after(10):
            reply = await client.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=messages,
                cache_control={"type": "ephemeral"},
            )
        usages.append(reply.usage)
        messages.append({"role": "assistant", "content": [text_block(text_of_tokens(10))]})
        messages.append({"role": "user", "content": text_of_tokens(20 + turn)})
    # each request reads the previous request's prompt and writes only what is new
    assert [(u.cache_read_input_tokens, u.cache_creation_input_tokens) for u in usages] == [
        (0, 100),
        (100, 30),
        (130, 31),
    ]
    assert all(u.input_tokens == 0 for u in usages)


async def test_more_than_four_breakpoints_is_a_bad_request(
    api: StandIn, client: AsyncAnthropic
) -> None:
    marked: Any = {**text_block("s"), "cache_control": {"type": "ephemeral"}}
    with anyio.fail_after(10), pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL,
            max_tokens=8,
            system=[marked] * 4,
            messages=[{"role": "user", "content": "hi"}],
            cache_control={"type": "ephemeral"},
        )
    assert "maximum of 4 blocks" in str(info.value)
    assert api.totals().requests == 0


async def test_count_tokens_answers_the_prompt_size(api: StandIn, client: AsyncAnthropic) -> None:
    with anyio.fail_after(10):
        counted = await client.messages.count_tokens(
            model=MODEL,
            system=text_of_tokens(12),
            messages=[{"role": "user", "content": text_of_tokens(8)}],
        )
    assert counted.input_tokens == 20


async def test_the_respond_hook_answers_before_the_agent_and_can_pass(
    api: StandIn, client: AsyncAnthropic
) -> None:
    def hook(body: dict[str, Any]) -> Reply | None:
        if body["messages"][0]["content"] == "fail":
            return Reply(401, {"type": "error", "error": {"type": "authentication_error"}})
        if body["messages"][0]["content"] == "hook":
            return Reply(200, message([text_block("from the hook")]))
        return None

    api.respond = hook
    with anyio.fail_after(10):
        hooked = await client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hook"}]
        )
        passed = await client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "other"}]
        )
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "fail"}]
            )
    assert hooked.content[0].text == "from the hook"  # type: ignore[union-attr]
    assert passed.content[0].type == "text"  # the agent answers a request without tools
    assert [r.status for r in api.requests] == [200, 200, 401]


def _fetch(url: str, *, method: str = "GET", data: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_other_paths_answer_empty_json_or_a_404_error(api: StandIn) -> None:
    assert _fetch(f"{api.base_url}/v1/models") == (200, {})
    assert _fetch(f"{api.base_url}/anything", method="HEAD") == (200, None)
    status, body = _fetch(f"{api.base_url}/v1/other", method="POST", data=b"{}")
    assert status == 404
    assert body["error"]["type"] == "not_found_error"
    assert [(r.method, r.path, r.status) for r in api.requests] == [
        ("GET", "/v1/models", 200),
        ("HEAD", "/anything", 200),
        ("POST", "/v1/other", 404),
    ]
    assert api.message_requests() == []
