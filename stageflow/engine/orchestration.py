"""The orchestrator seam of the engine, and the driver's questions in flight.

``Orchestration`` answers the engine's questions (``engine.asking``); the subagents layer
provides it (``subagents.orchestrator.engine_questions``), the engine only knows this shape.
``Questions`` asks each question the planner raises once per process, in a task of its own (a
slow model never holds the driver's lock), on a meter of the run's: the request's worst case is
reserved against the run and stage caps and the ledger records it under ``orchestration``.
The answer, checked, goes to the log as ``orchestration_decided`` in the driver's next step;
only then does the engine act on it. A process that dies before that asks again; one that dies
after it reads the answer back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from stageflow import events as ev
from stageflow.engine.asking import Answer, Ask, decided_event, rules
from stageflow.engine.metering import RunMeters, attempt_usage
from stageflow.engine.planner import StartAttempt
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import LeaseLost

__all__ = ["Orchestration", "Questions"]

log = logging.getLogger(__name__)


class Orchestration(Protocol):
    """Answers the engine's questions; never raises for the model's sake (the rules answer,
    with the reason, when the model is down, over budget or invalid)."""

    @property
    def kinds(self) -> frozenset[str]:
        """The questions it answers (``failure``, ``rework``)."""
        ...

    async def answer(self, ask: Ask, meter: AttemptMeter) -> Answer: ...


class Questions:
    """The questions of one run's driver in flight (module docstring)."""

    def __init__(
        self,
        orchestration: Orchestration | None,
        meters: RunMeters,
        commit: Callable[[Sequence[ev.Event]], Awaitable[object]],
    ) -> None:
        self.orchestration = orchestration
        self.kinds = orchestration.kinds if orchestration is not None else frozenset()
        self._meters = meters
        self._commit = commit
        self._asking: dict[str, anyio.CancelScope] = {}

    def launch(self, tg: TaskGroup | None, asks: Sequence[Ask]) -> None:
        """Ask every question not already being asked."""
        for ask in asks:
            if ask.key in self._asking or tg is None:
                continue
            scope = self._asking[ask.key] = anyio.CancelScope()
            tg.start_soon(self._ask, ask, scope)

    def cancel(self) -> None:
        """Stop asking (the driver stops): unanswered questions are asked again next time."""
        for scope in self._asking.values():
            scope.cancel()

    async def _ask(self, ask: Ask, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await self._asked(ask)
        finally:
            self._asking.pop(ask.key, None)

    @property
    def busy(self) -> bool:
        """A question is being asked: its answer will change the plan."""
        return bool(self._asking)

    async def _asked(self, ask: Ask) -> None:
        # the question's requests are the run's (its caps, its ledger) under the attempt asked
        # about; nothing else meters that attempt any more
        key = f"?{ask.key}"
        reserved = 0.0

        async def announce(usd: float) -> None:
            nonlocal reserved
            asked = ev.OrchestrationAsked(
                question="failure" if ask.question == "failure" else "rework",
                stage=ask.stage,
                attempt=ask.attempt,
                round=ask.round,
                reserved_usd=round(usd, 10),
            )
            await self._commit([asked])
            reserved += asked.reserved_usd

        start = StartAttempt(ask.stage, ask.attempt, "retry")
        meter = self._meters.open(start, None, key=key, announce=announce)
        try:
            answer = await self._answer(ask, meter)
            event = decided_event(ask, answer, attempt_usage(meter).cost_usd, reserved)
            log.info(
                "run %s stage %s: %s question answered %r by %s",
                self._meters.run_id,
                ask.stage,
                ask.question,
                event.answer,
                event.decided_by,
            )
            await self._commit([event])
        except LeaseLost:
            pass
        finally:
            self._meters.close(key, ask.attempt)

    async def _answer(self, ask: Ask, meter: AttemptMeter) -> Answer:
        assert self.orchestration is not None
        try:
            return await self.orchestration.answer(ask, meter)
        except Exception as exc:  # an orchestrator bug must not take the run down with it
            log.exception("run %s: the orchestrator raised", self._meters.run_id)
            fallback = rules(ask)
            why = f"orchestrator error: {type(exc).__name__}: {exc}"
            return Answer(fallback.answer, fallback.reason, "rules", None, why[:1000])
