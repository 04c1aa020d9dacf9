"""A scripted ``ModelClient`` for unit tests (pydantic-ai ``FunctionModel`` style), no HTTP.

``FakeModel(fn)`` answers each request with ``fn(call)``; the function may raise ``ModelError``
to play a provider failure. Every request is recorded (deep-copied, as it was when sent) in
``calls``. ``scripted(...)`` builds a function that plays a fixed list of replies in order.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from stageflow.errors import ModelError
from stageflow.models.client import Block, ModelCall, ModelReply, RawUsage

Respond = Callable[[ModelCall], ModelReply]
Step = ModelReply | ModelError | Respond

DEFAULT_MODEL = "claude-test-1"
_ids = itertools.count(1)


class FakeModel:
    """Implements ``ModelClient`` with a function of the request."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.calls: list[ModelCall] = []
        self.closed = False

    async def send(self, call: ModelCall) -> ModelReply:
        self.calls.append(copy.deepcopy(call))
        return self.respond(call)

    async def aclose(self) -> None:
        self.closed = True


def scripted(steps: Iterable[Step]) -> Respond:
    """Replies in order: a ``ModelReply`` is returned, a ``ModelError`` raised, a function
    called with the request. Running past the end fails the test loudly."""
    queue = list(steps)
    total = len(queue)

    def respond(call: ModelCall) -> ModelReply:
        if not queue:
            raise AssertionError(f"unexpected model request: the script has {total} step(s)")
        step = queue.pop(0)
        if isinstance(step, ModelError):
            raise step
        if isinstance(step, ModelReply):
            return step
        return step(call)

    return respond


def fake_model(*steps: Step) -> FakeModel:
    """A ``FakeModel`` playing ``steps`` in order."""
    return FakeModel(scripted(steps))


def usage(input_tokens: int = 100, output_tokens: int = 20, **cache: int) -> RawUsage:
    return RawUsage(input_tokens=input_tokens, output_tokens=output_tokens, **cache)


def tool_use(name: str, input: dict[str, Any], *, id: str | None = None) -> Block:
    return {"type": "tool_use", "id": id or f"toolu_{next(_ids):04d}", "name": name, "input": input}


def tool_reply(
    *calls: Block,
    text: str | None = None,
    model: str = DEFAULT_MODEL,
    raw_usage: RawUsage | None = None,
    stop_reason: str = "tool_use",
) -> ModelReply:
    """An assistant turn making ``calls`` (optionally after some text)."""
    content: list[Block] = [{"type": "text", "text": text}] if text else []
    content += list(calls)
    return ModelReply(
        content=content,
        stop_reason=stop_reason,
        model=model,
        usage=raw_usage or usage(),
        request_id=f"req_{next(_ids):04d}",
    )


def text_reply(
    text: str,
    *,
    stop_reason: str = "end_turn",
    model: str = DEFAULT_MODEL,
    raw_usage: RawUsage | None = None,
) -> ModelReply:
    """An assistant turn with only text."""
    return ModelReply(
        content=[{"type": "text", "text": text}],
        stop_reason=stop_reason,
        model=model,
        usage=raw_usage or usage(),
        request_id=f"req_{next(_ids):04d}",
    )


def submit(
    artifacts: dict[str, Any] | None = None,
    *,
    status: str = "passed",
    summary: str = "done",
    outputs: dict[str, Any] | None = None,
    **extra: Any,
) -> Block:
    """A ``submit_result`` tool_use block."""
    args: dict[str, Any] = {"status": status, "summary": summary, **extra}
    if artifacts is not None:
        args["artifacts"] = artifacts
    if outputs is not None:
        args["outputs"] = outputs
    return tool_use("submit_result", args)


def overloaded(message: str = "Overloaded") -> ModelError:
    return ModelError(message, retryable=True, status_code=529, kind="overloaded")
