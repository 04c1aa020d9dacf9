"""The tool-use loop of the API runner: one fresh conversation per stage attempt.

The loop sends the stage context (system prompt + brief) with the workspace tools, any extra
tools (the knowledge lookup) and ``submit_result``; runs the tools the model calls, answering
every ``tool_use`` of a turn in one user message; and ends when ``submit_result`` passes
``check_submission``. It is bounded by turns (model requests), ``max_tokens`` per request, a
stop after the same call repeats, and the USD caps: before every request its worst case is
reserved (``subagents/spend.py``), ``max_tokens`` lowered to what the caps allow, and a request
that cannot fit is not sent (``BudgetExceeded``). Every reply is recorded on the attempt meter,
including replies the loop then rejects.

Prompt caching: ``cache_control`` on the last tool definition and the last system block (the
stable prefix shared by retries, reworks and stages with the same agent and tools), and on the
last block of the two latest user turns, so each request reads the conversation the previous
one wrote. That is at most 4 breakpoints, the API's limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from stageflow.engine.runner import AttemptMeter, AttemptRequest, AttemptResult, Reservation
from stageflow.errors import InvalidArgument, ModelError
from stageflow.models.client import Block, ModelCall, ModelClient, ModelReply
from stageflow.subagents.context import StageContext
from stageflow.subagents.spend import reserve
from stageflow.subagents.submit import (
    SUBMIT_TOOL,
    Submission,
    check_submission,
    plan_checker,
    submit_tool_definition,
)
from stageflow.workspace.tools import call_workspace_tool, tool_definitions

if TYPE_CHECKING:
    from stageflow.models.pricing import PriceTable
    from stageflow.workflows.plan import PlanLimits
    from stageflow.workspace.root import Workspace

__all__ = ["MAX_CACHE_BREAKPOINTS", "ExtraTool", "LoopLimits", "build_tools", "run_tool_loop"]

log = logging.getLogger(__name__)

EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
MAX_CACHE_BREAKPOINTS = 4  # the Messages API's limit per request

_FINISH_HINT = (
    "Finish by calling submit_result with status, summary and the required artifacts ({names})."
)


@dataclass(frozen=True)
class LoopLimits:
    """Bounds of one attempt: model requests, tokens per reply, identical calls in a row."""

    max_turns: int = 30
    max_tokens: int = 8192
    repeat_limit: int = 3


@dataclass(frozen=True)
class ExtraTool:
    """A tool beyond the workspace ones (the knowledge lookup plugs in here)."""

    definition: dict[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[str]]


def build_tools(
    tool_names: Sequence[str],
    extra_tools: Sequence[ExtraTool],
    produces: Sequence[str],
    *,
    bash_allow: Sequence[str] = (),
    plan: PlanLimits | None = None,
) -> list[Block]:
    """Workspace tools, then extra tools, then ``submit_result``; the last one marked cacheable.

    ``submit_result``'s definition does not name the stage's artifacts (the brief does, and a
    submission missing one is refused naming it): tool definitions head the cached prefix, so
    stages sharing an agent and its tools share the cache entry.
    """
    del produces  # enforced by check_submission, named in the brief
    tools = [dict(t) for t in tool_definitions(tool_names, bash_allow=bash_allow)]
    tools += [dict(t.definition) for t in extra_tools]
    tools.append(submit_tool_definition((), plan))  # a plan stage's declares the plan schema
    names = [str(t.get("name")) for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"tool names offered twice: {', '.join(dupes)}")
    tools[-1]["cache_control"] = dict(EPHEMERAL)
    return tools


def _cacheable(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of a user message whose last content block carries a cache breakpoint."""
    content = message["content"]
    blocks: list[Block] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    )
    if blocks:
        blocks[-1] = {**blocks[-1], "cache_control": dict(EPHEMERAL)}
    return {**message, "content": blocks}


def with_cache_breakpoints(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as sent: breakpoints on the last block of the two latest user turns.

    The latest one writes the conversation so far to the cache; the one before sits exactly
    where the previous request wrote, so the read does not depend on the API's look-back window.
    """
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"][-2:]
    return [_cacheable(m) if i in users else m for i, m in enumerate(messages)]


def _call_key(block: Block) -> str:
    return f"{block.get('name')}:{json.dumps(block.get('input'), sort_keys=True, default=str)}"


def _tool_result(block: Block, text: str, is_error: bool) -> Block:
    result: Block = {
        "type": "tool_result",
        "tool_use_id": block.get("id"),
        "content": text or "(no output)",
    }
    if is_error:
        result["is_error"] = True
    return result


async def _settle(meter: AttemptMeter, reservation: Reservation, exc: ModelError) -> None:
    """A request the provider refused with an error status, or that never left (no
    connection), was not billed: release its reservation. One that may have been processed
    (a timeout, a dropped connection, a reply we could not read) keeps it, and the attempt
    counts it as spent."""
    if not exc.maybe_billed:
        await meter.release(reservation)


class _Loop:
    """The state of one attempt's conversation."""

    def __init__(
        self,
        client: ModelClient,
        *,
        request: AttemptRequest,
        context: StageContext,
        workspace: Workspace,
        tool_names: Sequence[str],
        prices: PriceTable,
        model: str,
        fallback_model: str | None,
        limits: LoopLimits,
        extra_tools: Sequence[ExtraTool],
        runner_name: str,
    ) -> None:
        self.client = client
        self.request = request
        self.workspace = workspace
        self.prices = prices
        self.model = model
        self.current = model  # switches to the fallback for the rest of the attempt
        self.answered: str | None = None
        self.fallback = fallback_model
        self.limits = limits
        self.runner_name = runner_name
        self.produces = request.stage.required_artifacts
        self.produces_extra = request.stage.produces_extra
        self.plan_check = plan_checker(request)
        agent_turns = request.agent.max_turns if request.agent else None
        self.max_turns = agent_turns or limits.max_turns
        self.tools = build_tools(
            tool_names,
            extra_tools,
            self.produces,
            bash_allow=request.bash_allow,
            plan=request.plan_limits,
        )
        self.extras = {str(t.definition.get("name")): t for t in extra_tools}
        self.workspace_tools = {str(t["name"]) for t in self.tools} - {SUBMIT_TOOL, *self.extras}
        self.system: list[Block] = [
            {"type": "text", "text": context.system, "cache_control": dict(EPHEMERAL)}
        ]
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": context.brief}]
        self.last_key: str | None = None
        self.streak = 0
        self.finish_hint = _FINISH_HINT.format(names=", ".join(self.produces) or "none")

    # -- requests ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"run {self.request.run_id} stage '{self.request.stage.id}'"

    async def _send(self, call: ModelCall) -> tuple[ModelReply, Reservation]:
        """Send ``call`` within the caps (``spend.reserve``), falling back to the fallback
        model once when the primary is overloaded (see ``_settle`` for the reservation of a
        request that failed)."""
        meter = self.request.meter
        where = f"budget exceeded in stage '{self.request.stage.id}'"
        sized, reservation = await reserve(call, meter, self.prices, self.client, where=where)
        try:
            return await self.client.send(sized), reservation
        except ModelError as exc:
            await _settle(meter, reservation, exc)
            if exc.kind != "overloaded" or not self.fallback or self.fallback == self.current:
                raise
            log.warning(
                "%s: %s is overloaded (%s); using the fallback model %s for the rest of "
                "the attempt",
                self._where(),
                self.current,
                exc,
                self.fallback,
            )
        self.current = self.fallback
        sized, reservation = await reserve(
            replace(call, model=self.current), meter, self.prices, self.client, where=where
        )
        try:
            return await self.client.send(sized), reservation
        except ModelError as exc:
            await _settle(meter, reservation, exc)
            raise

    async def _request(self) -> ModelReply:
        call = ModelCall(
            model=self.current,
            system=self.system,
            tools=self.tools,
            messages=with_cache_breakpoints(self.messages),
            max_tokens=self.limits.max_tokens,
        )
        reply, reservation = await self._send(call)
        self.answered = reply.model
        await self.request.meter.record(
            self.prices.request_usage(
                model=reply.model,
                model_requested=self.current,
                usage=reply.usage,
                request_id=reply.request_id,
            ),
            reservation,
        )
        return reply

    # -- results ----------------------------------------------------------------------------

    def _result(self, submission: Submission) -> AttemptResult:
        return AttemptResult(
            status=submission.status,
            summary=submission.summary,
            artifacts=submission.artifacts,
            outputs=submission.outputs,
            usage=self.request.meter.usage,
            model=self.answered,
            model_requested=self.model,
            runner=self.runner_name,
            plan=submission.plan,
        )

    def _failed(self, error: str) -> AttemptResult:
        log.info("%s: attempt failed: %s", self._where(), error)
        return AttemptResult(
            status="failed",
            summary=error,
            usage=self.request.meter.usage,
            model=self.answered,
            model_requested=self.model,
            runner=self.runner_name,
            error=error,
        )

    # -- tools ------------------------------------------------------------------------------

    def _repeated(self, uses: list[Block]) -> str | None:
        """The tool name when this turn makes the same call ``repeat_limit`` times in a row."""
        for block in uses:
            key = _call_key(block)
            self.streak = self.streak + 1 if key == self.last_key else 1
            self.last_key = key
            if self.streak >= self.limits.repeat_limit:
                return str(block.get("name"))
        return None

    async def _call_tool(self, block: Block) -> tuple[str, bool]:
        name = str(block.get("name"))
        args = block.get("input")
        if not isinstance(args, dict):
            return f"tool '{name}': the input must be a JSON object", True
        try:
            if name in self.workspace_tools:
                return await call_workspace_tool(self.workspace, name, args), False
            if name in self.extras:
                return await self.extras[name].call(args), False
        except (InvalidArgument, OSError) as exc:  # ToolError included: the model can react
            return f"{name} failed: {exc}", True
        except UnicodeError:
            # model text a file name, file or command cannot hold (a lone surrogate escape in
            # the JSON); the message leaves the text out, so it cannot break the next request
            return f"{name} failed: its input contains text that is not valid Unicode", True
        offered = ", ".join(str(t["name"]) for t in self.tools)
        return f"unknown tool '{name}'; the tools are: {offered}", True

    async def _run_turn(self, uses: list[Block]) -> Submission | list[Block]:
        """Run a turn's calls (``submit_result`` last); a valid submission ends the attempt."""
        results: list[Block | None] = [None] * len(uses)
        failed: list[str] = []
        for i, block in enumerate(uses):
            if block.get("name") != SUBMIT_TOOL:
                text, is_error = await self._call_tool(block)
                results[i] = _tool_result(block, text, is_error)
                if is_error:
                    failed.append(str(block.get("name")))
        for i, block in enumerate(uses):
            if block.get("name") != SUBMIT_TOOL:
                continue
            args = block.get("input")
            checked = (
                check_submission(
                    args, self.produces, self.plan_check, extra_allowed=self.produces_extra
                )
                if isinstance(args, dict)
                else "submit_result refused: the input must be a JSON object."
            )
            if isinstance(checked, Submission) and failed:
                checked = (
                    "submit_result not accepted: other tool calls in the same turn failed "
                    f"({', '.join(failed)}); read their results, then call submit_result again."
                )
            if isinstance(checked, Submission):
                return checked
            results[i] = _tool_result(block, checked, True)
        return [r for r in results if r is not None]

    def _cut_off(self, uses: list[Block]) -> list[Block]:
        note = (
            f"not run: your reply reached the max_tokens limit ({self.limits.max_tokens}) "
            "before this call was complete. Send it again, shorter (write large files in parts)."
        )
        return [_tool_result(b, note, True) for b in uses]

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> AttemptResult:
        for turn in range(1, self.max_turns + 1):
            reply = await self._request()
            uses = reply.tool_uses()
            log.debug(
                "%s turn %d: stop_reason=%s, %d tool call(s)",
                self._where(),
                turn,
                reply.stop_reason,
                len(uses),
            )
            if reply.stop_reason == "refusal":
                text = reply.text().strip()
                return self._failed(
                    "the model refused to continue (stop_reason 'refusal')"
                    + (f": {text}" if text else "")
                )
            if reply.stop_reason == "model_context_window_exceeded":
                return self._failed("the conversation outgrew the model's context window")
            if reply.content:  # an empty assistant turn would be rejected on the next request
                self.messages.append({"role": "assistant", "content": reply.content})
            if uses and reply.stop_reason == "max_tokens":
                self.messages.append({"role": "user", "content": self._cut_off(uses)})
            elif uses:
                repeated = self._repeated(uses)
                if repeated is not None:
                    return self._failed(
                        f"stopped: the model called '{repeated}' with the same input "
                        f"{self.limits.repeat_limit} times in a row"
                    )
                outcome = await self._run_turn(uses)
                if isinstance(outcome, Submission):
                    return self._result(outcome)
                self.messages.append({"role": "user", "content": outcome})
            elif reply.stop_reason == "pause_turn":
                continue  # the API asks to resend the conversation as it is
            elif reply.stop_reason == "max_tokens":
                self._nudge("Your reply was cut off at the max_tokens limit. Continue. ")
            else:
                self._nudge("You ended your turn without calling submit_result. ")
        return self._failed(f"stopped after {self.max_turns} turns without submit_result")

    def _nudge(self, text: str) -> None:
        self.messages.append(
            {"role": "user", "content": [{"type": "text", "text": text + self.finish_hint}]}
        )


async def run_tool_loop(
    client: ModelClient,
    *,
    request: AttemptRequest,
    context: StageContext,
    workspace: Workspace,
    tool_names: Sequence[str],
    prices: PriceTable,
    model: str,
    fallback_model: str | None = None,
    limits: LoopLimits = LoopLimits(),
    extra_tools: Sequence[ExtraTool] = (),
    runner_name: str = "anthropic",
) -> AttemptResult:
    """Run one stage attempt as a tool-use conversation until ``submit_result`` or a bound.

    Returns a ``failed`` result when the model refuses, stops without submitting within
    ``max_turns`` (``request.agent.max_turns`` when set), or repeats one call; raises
    ``BudgetExceeded`` instead of sending a request past a USD cap, and ``ModelError`` when the
    provider fails (after switching once to ``fallback_model`` on ``overloaded``).
    """
    request.meter.note_context(context.manifest())
    loop = _Loop(
        client,
        request=request,
        context=context,
        workspace=workspace,
        tool_names=tool_names,
        prices=prices,
        model=model,
        fallback_model=fallback_model,
        limits=limits,
        extra_tools=extra_tools,
        runner_name=runner_name,
    )
    return await loop.run()
