"""Shared pieces of the tool-loop tests: a price table, a context, and a bounded loop runner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.models.client import Block, ModelCall
from stageflow.models.pricing import Price, PriceTable
from stageflow.subagents.context import ContextItem, StageContext
from stageflow.subagents.tool_loop import ExtraTool, LoopLimits, run_tool_loop
from stageflow.workspace.root import Workspace
from tests.subagents.factories import agent_request
from tests.subagents.fake_model import DEFAULT_MODEL, FakeModel

FALLBACK_MODEL = "claude-fallback-1"
DEFAULT_LIMITS = LoopLimits()
FILE_TOOLS = ("Read", "Write", "Edit", "Glob", "Grep")

# USD per million tokens; the fake models answer with these ids
PRICES = PriceTable(
    prices={
        DEFAULT_MODEL: Price(
            input=3.0, output=15.0, cache_write_5m=3.75, cache_write_1h=6.0, cache_read=0.3
        ),
        FALLBACK_MODEL: Price(
            input=1.0, output=5.0, cache_write_5m=1.25, cache_write_1h=2.0, cache_read=0.1
        ),
    },
    as_of="2026-01-01",
)

CONTEXT = StageContext(
    system="You are the architect. Design before code.",
    brief="Task: add rate limiting. Produce: design. Finish with submit_result.",
    items=[ContextItem(kind="brief", ref="brief", chars=70, tokens_est=18)],
)


def request_for(
    workdir: Path, produces: Sequence[str] = ("design",), **fields: Any
) -> AttemptRequest:
    return agent_request(workdir, produces=list(produces), **fields)


async def run_loop(
    model: FakeModel,
    workdir: Path,
    *,
    request: AttemptRequest | None = None,
    tools: Sequence[str] = FILE_TOOLS,
    limits: LoopLimits = DEFAULT_LIMITS,
    fallback: str | None = None,
    extra_tools: Sequence[ExtraTool] = (),
) -> AttemptResult:
    """``run_tool_loop`` on a real workspace at ``workdir``, bounded in time."""
    with anyio.fail_after(10):
        return await run_tool_loop(
            model,
            request=request or request_for(workdir),
            context=CONTEXT,
            workspace=Workspace(workdir),
            tool_names=tools,
            prices=PRICES,
            model=DEFAULT_MODEL,
            fallback_model=fallback,
            limits=limits,
            extra_tools=extra_tools,
        )


def tool_results(call: ModelCall) -> list[Block]:
    """The tool_result blocks of a request's last (user) message."""
    last = call.messages[-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b.get("type") == "tool_result"]


def last_text(call: ModelCall) -> str:
    """The text of a request's last (user) message."""
    content = call.messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(str(b.get("text", "")) for b in content)


def count_breakpoints(value: object) -> int:
    """How many ``cache_control`` markers a request carries, anywhere."""
    if isinstance(value, dict):
        return ("cache_control" in value) + sum(count_breakpoints(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_breakpoints(v) for v in value)
    return 0


def counting_tool(
    name: str = "lookup", answer: str = "found it"
) -> tuple[ExtraTool, list[dict[str, Any]]]:
    """An extra tool that records its calls."""
    seen: list[dict[str, Any]] = []

    async def call(args: dict[str, Any]) -> str:
        seen.append(args)
        return answer

    definition = {
        "name": name,
        "description": "Look something up.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    return ExtraTool(definition=definition, call=call), seen
