"""Messages API wire shapes: replies, error bodies, the SSE event sequence, request helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: an HTTP status, headers and a JSON body.

    A 200 whose body is a message (``"type": "message"``) is sent as SSE when the request
    streams, and gets its ``usage``, ``model`` and ``id`` filled in by the stand-in unless the
    body sets them.
    """

    status: int
    body: Json
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_message(self) -> bool:
        return self.status == 200 and self.body.get("type") == "message"


def text_block(text: str) -> Json:
    return {"type": "text", "text": text}


def tool_use_block(use_id: str, name: str, arguments: Json) -> Json:
    return {"type": "tool_use", "id": use_id, "name": name, "input": arguments}


def message(content: list[Json], stop_reason: str | None = "end_turn", **fields: Any) -> Json:
    """An assistant message body; ``id``, ``model`` and ``usage`` may be left to the stand-in."""
    return {
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        **fields,
    }


def error_body(kind: str, text: str = "") -> Json:
    """The API's error envelope."""
    return {"type": "error", "error": {"type": kind, "message": text or kind.replace("_", " ")}}


def error_reply(
    status: int | None, kind: str, text: str = "", headers: dict[str, str] | None = None
) -> Reply:
    """An error ``Reply``; the status defaults to the one the API uses for ``kind``."""
    return Reply(status or ERROR_STATUS.get(kind, 500), error_body(kind, text), dict(headers or {}))


def sse_events(msg: Json) -> Iterator[bytes]:
    """The streaming event sequence that rebuilds ``msg`` block by block.

    ``message_start`` carries the prompt usage; ``message_delta`` repeats it (cumulative totals,
    as the API sends them) with the output tokens.
    """

    def event(payload: Json) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()

    usage = dict(msg.get("usage") or {})
    head = {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield event({"type": "message_start", "message": head})
    for index, block in enumerate(msg["content"]):
        start: Json
        delta: Json
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        elif block["type"] == "tool_use":
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:  # other blocks arrive whole
            yield event({"type": "content_block_start", "index": index, "content_block": block})
            yield event({"type": "content_block_stop", "index": index})
            continue
        yield event({"type": "content_block_start", "index": index, "content_block": start})
        yield event({"type": "content_block_delta", "index": index, "delta": delta})
        yield event({"type": "content_block_stop", "index": index})
    delta_usage = {k: v for k, v in usage.items() if k != "cache_creation"}
    yield event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
            "usage": delta_usage,
        }
    )
    yield event({"type": "message_stop"})


# -- reading requests ------------------------------------------------------------------------


def text_of(content: Any) -> str:
    """The text of a message's or a tool_result's content: a string or a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    parts.append(text_of(block.get("content")))
        return "\n".join(parts)
    return ""


def system_text(body: Json) -> str:
    """The system prompt as one string."""
    return text_of(body.get("system"))


def tool_names(body: Json) -> list[str]:
    return [str(t.get("name")) for t in body.get("tools") or []]
