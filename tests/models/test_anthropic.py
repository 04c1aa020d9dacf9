"""AnthropicClient with the real ``anthropic.AsyncAnthropic`` against a loopback Messages API.

The stand-in is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 that answers ``POST /v1/messages``
with scripted replies and records every request (see the SDK field guide, section 6). Retry
delays come from ``retry-after-ms: 1`` headers so that the SDK's own retries stay fast.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.errors import ModelError
from stageflow.models.anthropic import AnthropicClient
from stageflow.models.client import ModelCall, ModelReply, RawUsage

pytestmark = pytest.mark.anyio

FAST = {"retry-after-ms": "1"}


class MessagesStandIn:
    """A scripted ``POST /v1/messages`` on loopback; ``requests`` records what arrived."""

    def __init__(self) -> None:
        self.replies: deque[tuple[int, dict[str, str], dict[str, Any]]] = deque()
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                stand_in.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)}
                )
                status, headers, reply = stand_in.replies.popleft()
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", f"req_{len(stand_in.requests)}")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def push(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.replies.append((status, headers or {}, body))


def message(content: list[dict[str, Any]], stop_reason: str, **usage: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": usage.pop("model", "claude-sonnet-4-6-20260101"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def error(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}}


@pytest.fixture
def api() -> Iterator[MessagesStandIn]:
    stand_in = MessagesStandIn()
    stand_in.thread.start()
    try:
        yield stand_in
    finally:
        stand_in.httpd.shutdown()
        stand_in.httpd.server_close()
        stand_in.thread.join(timeout=5)


SYSTEM = [
    {"type": "text", "text": "You are the architect."},
    {"type": "text", "text": "Stage brief ...", "cache_control": {"type": "ephemeral"}},
]
TOOLS = [
    {
        "name": "Read",
        "description": "Read a file",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
]
USER = {"role": "user", "content": [{"type": "text", "text": "Design the feature."}]}


def call(**fields: Any) -> ModelCall:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "system": SYSTEM,
        "tools": TOOLS,
        "messages": [USER],
        "max_tokens": 1234,
    }
    return ModelCall(**{**base, **fields})


async def send(client: AnthropicClient, model_call: ModelCall) -> ModelReply:
    try:
        with anyio.fail_after(10):
            return await client.send(model_call)
    finally:
        await client.aclose()


async def failure(client: AnthropicClient, model_call: ModelCall | None = None) -> ModelError:
    with pytest.raises(ModelError) as info:
        await send(client, model_call or call())
    return info.value


def client_for(api: MessagesStandIn, *, max_retries: int = 2) -> AnthropicClient:
    return AnthropicClient(api_key="test-key", base_url=api.base_url, max_retries=max_retries)


# -- the request and the reply ----------------------------------------------------------------


async def test_the_request_carries_system_tools_cache_control_model_and_max_tokens(
    api: MessagesStandIn,
) -> None:
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn"))
    await send(client_for(api), call())
    [request] = api.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["Authorization"] == "Bearer test-key"
    body = request["body"]
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 1234
    assert body["system"] == SYSTEM
    assert body["tools"] == TOOLS
    assert body["messages"] == [USER]
    assert "stream" not in body or body["stream"] is False


async def test_empty_system_and_tools_are_left_out(api: MessagesStandIn) -> None:
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn"))
    await send(client_for(api), call(system=[], tools=[]))
    assert "system" not in api.requests[0]["body"]
    assert "tools" not in api.requests[0]["body"]


async def test_the_reply_becomes_plain_blocks_usage_model_and_request_id(
    api: MessagesStandIn,
) -> None:
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "Reading the spec."},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "SPEC.md"}},
    ]
    api.push(
        200,
        message(
            content,
            "tool_use",
            input_tokens=120,
            output_tokens=45,
            cache_creation_input_tokens=1000,
            cache_creation={"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 700},
            cache_read_input_tokens=2000,
        ),
    )
    reply = await send(client_for(api), call())
    assert reply.content == content
    assert reply.stop_reason == "tool_use"
    assert reply.model == "claude-sonnet-4-6-20260101"
    assert reply.request_id == "req_1"
    assert reply.usage == RawUsage(
        input_tokens=120,
        output_tokens=45,
        cache_write_5m_tokens=300,
        cache_write_1h_tokens=700,
        cache_read_tokens=2000,
    )
    assert reply.tool_uses() == [content[1]]


async def test_the_reply_blocks_go_back_on_the_wire_unchanged(api: MessagesStandIn) -> None:
    content: list[dict[str, Any]] = [
        {"type": "tool_use", "id": "toolu_9", "name": "Read", "input": {"path": "a.py"}}
    ]
    api.push(200, message(content, "tool_use"))
    api.push(200, message([{"type": "text", "text": "done"}], "end_turn"))
    client = client_for(api)
    with anyio.fail_after(10):
        first = await client.send(call())
    turn = [
        USER,
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x = 1"}],
        },
    ]
    second = await send(client, call(messages=turn))
    assert api.requests[1]["body"]["messages"][1] == {"role": "assistant", "content": content}
    assert second.text() == "done"


async def test_cache_writes_without_a_breakdown_count_as_five_minute(api: MessagesStandIn) -> None:
    api.push(
        200,
        message([{"type": "text", "text": "ok"}], "end_turn", cache_creation_input_tokens=640),
    )
    reply = await send(client_for(api), call())
    assert (reply.usage.cache_write_5m_tokens, reply.usage.cache_write_1h_tokens) == (640, 0)
    assert reply.usage.cache_read_tokens == 0


async def test_a_large_max_tokens_is_sent_without_the_streaming_guard(
    api: MessagesStandIn,
) -> None:
    # with the SDK's default timeout, max_tokens > 21,333 is refused before sending
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn"))
    await send(client_for(api), call(max_tokens=64_000))
    assert api.requests[0]["body"]["max_tokens"] == 64_000


async def test_a_reply_without_a_model_reports_the_requested_one(api: MessagesStandIn) -> None:
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn", model=None))
    reply = await send(client_for(api), call(model="claude-haiku-4-5"))
    assert reply.model == "claude-haiku-4-5"


async def test_a_lone_surrogate_in_the_conversation_is_sent_as_a_replacement_character(
    api: MessagesStandIn,
) -> None:
    # JSON from the model may carry "\ud800"; echoed back (or in a tool result naming a file
    # whose name is not UTF-8) it cannot be encoded, and the SDK would raise before sending
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn"))
    tool_use = {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "\ud800"}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "caf\udce9.txt"}
    messages = [
        USER,
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [result]},
    ]
    reply = await send(client_for(api), call(messages=messages))
    assert reply.text() == "ok"
    [sent] = api.requests
    assert sent["body"]["messages"][1]["content"][0]["input"] == {"file_path": "\ufffd"}
    assert sent["body"]["messages"][2]["content"][0]["content"] == "caf\ufffd.txt"


# -- retries and errors -----------------------------------------------------------------------


async def test_an_overloaded_answer_is_retried_by_the_client(api: MessagesStandIn) -> None:
    api.push(529, error("overloaded_error", "Overloaded"), FAST)
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn"))
    reply = await send(client_for(api), call())
    assert reply.text() == "ok"
    # our retry, not the SDK's (its retries are off): each a fresh SDK call
    assert [r["headers"]["x-stainless-retry-count"] for r in api.requests] == ["0", "0"]
    assert api.requests[0]["body"] == api.requests[1]["body"]
    assert reply.request_id == "req_2"


async def test_401_fails_at_once_naming_the_api_key(api: MessagesStandIn) -> None:
    api.push(401, error("authentication_error", "invalid x-api-key"))
    err = await failure(client_for(api))
    assert (err.kind, err.retryable, err.status_code) == ("auth", False, 401)
    assert "ANTHROPIC_API_KEY" in str(err)
    assert "invalid x-api-key" in str(err)
    assert len(api.requests) == 1


async def test_429_with_retry_after_is_a_retryable_rate_limit_once_retries_run_out(
    api: MessagesStandIn,
) -> None:
    for _ in range(2):
        api.push(429, error("rate_limit_error", "slow down"), FAST)
    err = await failure(client_for(api, max_retries=1))
    assert (err.kind, err.retryable, err.status_code) == ("rate_limit", True, 429)
    assert len(api.requests) == 2


async def test_429_without_retry_after_is_a_spend_limit_and_not_retryable(
    api: MessagesStandIn,
) -> None:
    api.push(
        429,
        error("rate_limit_error", "You have reached your specified API usage limits."),
    )
    err = await failure(client_for(api, max_retries=0))
    assert (err.kind, err.retryable, err.status_code) == ("spend_limit", False, 429)
    assert "spend or usage limit" in str(err)
    assert "API usage limits" in str(err)


async def test_a_429_with_retry_after_is_still_retried_by_the_sdk(api: MessagesStandIn) -> None:
    # only a 429 *without* retry-after (a spend limit) is exempt from the SDK's retries
    for _ in range(2):
        api.push(429, error("rate_limit_error", "slow down"), FAST)
    api.push(200, message([{"type": "text", "text": "ok"}], "end_turn"))
    reply = await send(client_for(api), call())
    assert reply.text() == "ok"
    assert len(api.requests) == 3


async def test_a_429_without_retry_after_is_sent_once_whatever_max_retries(
    api: MessagesStandIn,
) -> None:
    api.push(429, error("rate_limit_error", "You have reached your specified API usage limits."))
    api.push(200, message([{"type": "text", "text": "not reached"}], "end_turn"))
    err = await failure(client_for(api, max_retries=5))
    assert (err.kind, err.retryable, err.status_code) == ("spend_limit", False, 429)
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("status", "kind_in_body", "kind", "retryable", "sent"),
    [
        (529, "overloaded_error", "overloaded", True, 2),
        (503, "api_error", "overloaded", True, 2),
        (500, "api_error", "server", True, 2),
        (400, "invalid_request_error", "bad_request", False, 1),
        (404, "not_found_error", "bad_request", False, 1),
        (403, "permission_error", "auth", False, 1),
        (402, "billing_error", "spend_limit", False, 1),
    ],
)
async def test_status_codes_map_to_kinds_after_the_sdk_retries(
    api: MessagesStandIn, status: int, kind_in_body: str, kind: str, retryable: bool, sent: int
) -> None:
    for _ in range(2):
        api.push(status, error(kind_in_body, "nope"), FAST)
    err = await failure(client_for(api, max_retries=1))
    assert (err.kind, err.retryable, err.status_code) == (kind, retryable, status)
    assert len(api.requests) == sent


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_refused_connection_is_retryable() -> None:
    port = closed_port()
    client = AnthropicClient(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    err = await failure(client)
    assert (err.kind, err.retryable, err.status_code) == ("connection", True, None)
    assert f"127.0.0.1:{port}" in str(err)


async def test_no_credentials_at_all_is_an_auth_failure(
    api: MessagesStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/anthropic profiles either
    err = await failure(AnthropicClient(base_url=api.base_url, max_retries=0))
    assert (err.kind, err.retryable) == ("auth", False)
    assert "ANTHROPIC_API_KEY" in str(err)
    assert isinstance(err.__cause__, TypeError)
    assert api.requests == []


async def test_a_reply_that_is_not_a_message_is_a_protocol_error(api: MessagesStandIn) -> None:
    api.push(200, {"unexpected": True})
    err = await failure(client_for(api))
    assert (err.kind, err.retryable) == ("protocol", False)
    assert "unexpected response" in str(err)
