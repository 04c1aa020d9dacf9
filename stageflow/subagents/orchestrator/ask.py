"""Asking the orchestrator model a structured question, with the rules as the fallback.

``Orchestrator.ask(question, meter)`` sends one request: the question's prompt and one tool,
``answer``, whose input schema is the answer's model, forced with ``tool_choice``. The request
goes through the caps like every other (``spend.reserve`` on the meter: its worst case is
reserved, the ledger records it). It never raises for the model's sake: when the provider
cannot be reached, the caps do not allow the request, the request times out, or the answer
does not validate, the question's rule answer is returned with the reason (``Decided``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from pydantic import ValidationError

from stageflow.base import Model
from stageflow.engine.runner import AttemptMeter, Reservation
from stageflow.errors import BudgetExceeded, ModelError
from stageflow.models.client import ModelCall, ModelClient, ModelReply
from stageflow.models.pricing import PriceTable
from stageflow.subagents.orchestrator.options import OrchestratorOptions
from stageflow.subagents.orchestrator.questions import Question
from stageflow.subagents.spend import reserve
from stageflow.usage import RequestUsage

__all__ = ["ANSWER_TOOL", "Decided", "Orchestrator"]

log = logging.getLogger(__name__)

ANSWER_TOOL = "answer"
A = TypeVar("A", bound=Model)


@dataclass(frozen=True)
class Decided(Generic[A]):
    """An answer and who gave it: ``by`` is ``model`` or ``rules`` (then ``fallback`` says
    why); ``cost_usd`` is what the question cost (0 for the rules)."""

    answer: A
    by: str
    model: str | None = None
    fallback: str | None = None
    cost_usd: float = 0.0


def _parsed(reply: ModelReply, schema: type[A]) -> A | str:
    """The answer in ``reply`` (the ``answer`` tool's input, or a JSON text), or why not."""
    data: Any = None
    for block in reply.tool_uses():
        if block.get("name") == ANSWER_TOOL:
            data = block.get("input")
            break
    if data is None:
        text = reply.text().strip()
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return "the model did not call the answer tool"
        try:
            data = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            return "the model's answer is not valid JSON"
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return f"the model's answer is invalid at {where}: {first['msg']}"


class Orchestrator:
    """Answers structured questions with a cheap model, else by rules (module docstring)."""

    def __init__(
        self,
        options: OrchestratorOptions,
        *,
        client: Callable[[], ModelClient] | None,
        prices: PriceTable,
        model: str,
    ) -> None:
        self.options = options
        self._client_factory = client
        self._client: ModelClient | None = None
        self.prices = prices
        self.model = model  # resolved model id

    def client(self) -> ModelClient | None:
        if self._client is None and self._client_factory is not None:
            self._client = self._client_factory()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _rules(self, question: Question[A], why: str) -> Decided[A]:
        log.info("orchestrator: %s question answered by rules (%s)", question.kind, why)
        return Decided(answer=question.rules(), by="rules", fallback=why)

    async def ask(
        self, question: Question[A], meter: AttemptMeter, *, model: str | None = None
    ) -> Decided[A]:
        """The model's answer, or the rules' with the reason; never raises for the model."""
        if self.options.provider == "rules":
            return self._rules(question, "[orchestrator] provider is rules")
        try:
            client = self.client()
        except ModelError as exc:  # e.g. the optional ollama package is not installed
            return self._rules(question, str(exc))
        if client is None:
            return self._rules(question, "no orchestrator model is available")
        use = model or self.model
        tool = {
            "name": ANSWER_TOOL,
            "description": f"Give your {question.kind} answer.",
            "input_schema": question.schema.model_json_schema(),
        }
        call = ModelCall(
            model=use,
            system=[{"type": "text", "text": question.system}],
            tools=[tool],
            messages=[{"role": "user", "content": question.prompt}],
            max_tokens=self.options.max_tokens,
            tool_choice={"type": "tool", "name": ANSWER_TOOL},
        )
        # the question's own cap on top of the run's: a meter of the attempt, narrowed
        capped = _Narrowed(meter, self.options.budget_usd)
        sized, reservation = call, None
        if self.options.provider != "ollama":  # a local model costs nothing to reserve
            try:
                sized, reservation = await reserve(
                    call, capped, self.prices, client, where=f"orchestrator {question.kind}"
                )
            except BudgetExceeded as exc:
                return self._rules(question, f"over budget: {exc}")
        try:
            with anyio.fail_after(self.options.timeout):
                reply = await client.send(sized)
        except ModelError as exc:
            if reservation is not None and not exc.maybe_billed:
                await capped.release(reservation)
            return self._rules(question, f"{use} unavailable: {exc}")
        except TimeoutError:
            return self._rules(question, f"{use} did not answer in {self.options.timeout:g}s")
        usage = self.prices.request_usage(
            model=reply.model, model_requested=use, usage=reply.usage, request_id=reply.request_id
        )
        await capped.record(usage, reservation)
        parsed = _parsed(reply, question.schema)
        if isinstance(parsed, str):
            decided = self._rules(question, parsed)
            return Decided(decided.answer, "rules", reply.model, decided.fallback, usage.cost_usd)
        return Decided(parsed, "model", reply.model, None, usage.cost_usd)


class _Narrowed(AttemptMeter):
    """The attempt's meter, allowing at most ``cap`` more for one question: every reservation
    and record goes to the attempt's meter (so the run's caps and ledger see it)."""

    def __init__(self, inner: AttemptMeter, cap: float) -> None:
        super().__init__()
        self._inner = inner
        self._cap = cap
        self.usage = inner.usage

    def remaining_usd(self) -> float | None:
        left = self._inner.remaining_usd()
        return self._cap if left is None else min(left, self._cap)

    async def begin(
        self, usd: float, model_requested: str, category: str = "orchestration"
    ) -> Reservation:
        del category  # every request of a question is orchestration
        return await self._inner.begin(usd, model_requested, "orchestration")

    async def release(self, reservation: Reservation) -> None:
        await self._inner.release(reservation)

    async def record(self, usage: RequestUsage, reservation: Reservation | None = None) -> None:
        await self._inner.record(usage, reservation)
