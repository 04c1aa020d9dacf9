"""The runner seam: what the engine hands a runner per stage attempt, and what it gets back.

The engine knows nothing of models or SDKs. A runner (``stageflow.subagents``) receives an
``AttemptRequest`` and returns an ``AttemptResult``; it may raise ``RunFailure`` subclasses
(``ModelError(retryable=...)``, ``BudgetExceeded``) and must honour anyio cancellation.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ConfigDict, Field

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.base import Model
from stageflow.engine.lanes import Lane
from stageflow.usage import RequestUsage, Usage
from stageflow.workflows.plan import PlanLimits
from stageflow.workflows.spec import StageSpec

AttemptStatus = Literal["passed", "failed", "changes_requested"]


@dataclass
class Reservation:
    """A model request in flight: what the caps hold for it until its usage is known, and
    its number in the attempt's ledger (None when nothing records it)."""

    usd: float
    seq: int | None = None


class AttemptMeter:
    """The engine's meter for one attempt: runners report every model request to it.

    - ``await begin(usd, model)`` reserves a request's worst case before it is sent: the caps
      hold ``usd`` for it (concurrent attempts see that much less) and the ledger records the
      request as started, so a crash before its reply still counts the reservation as spent;
    - ``await record(usage, reservation)`` counts the finished request (also when its reply is
      unusable) and releases its reservation; ``await release(reservation)`` releases one whose
      request was refused or never reached the provider (nothing is billed then);
    - ``remaining_usd()`` is what the run and stage caps still allow, counting this attempt's
      spend so far and the live spend and reservations of concurrent attempts of the same run
      (None: no cap);
    - ``note_context(manifest)`` records what went into the attempt's first request (the
      context builder's manifest); the engine stores it with the attempt.

    Runners must not assume a sink: a meter built with no arguments only accumulates.
    """

    def __init__(
        self,
        *,
        budget_usd: float | None = None,
        sink: Callable[[RequestUsage], Awaitable[None]] | None = None,
        remaining: Callable[[], float | None] | None = None,
        sharers: Callable[[], int] | None = None,
        ledger: RequestLedger | None = None,
    ) -> None:
        self._budget = budget_usd
        self._sink = sink
        self._remaining = remaining
        self._sharers = sharers
        self._ledger = ledger
        self.requests: list[RequestUsage] = []
        self.usage = Usage()
        self.context: dict[str, Any] = {}
        self.reserved = 0.0
        self.in_flight: list[Reservation] = []

    def reserve(self, usd: float) -> None:
        """Hold ``usd`` of the caps for this attempt until it ends: concurrent attempts of the
        run see that much less. For runners that learn their spend only at the end (Claude
        Code enforces ``--max-budget-usd`` itself)."""
        self.reserved = max(0.0, usd)

    def held_usd(self) -> float:
        """What this attempt holds of the caps: its spend plus the reservations of requests in
        flight, or its attempt-level reservation if larger."""
        live = self.usage.cost_usd + sum(r.usd for r in self.in_flight)
        return max(live, self.reserved)

    def share_usd(self) -> float | None:
        """This attempt's fair share of what the caps allow: the remaining budget split evenly
        with the run's other attempts in flight that hold no reservation yet (None: no cap)."""
        left = self.remaining_usd()
        if left is None:
            return None
        sharers = self._sharers() if self._sharers is not None else 1
        return left / max(1, sharers)

    async def begin(self, usd: float, model_requested: str, category: str = "agent") -> Reservation:
        """Reserve ``usd`` for a request about to be sent (call it right after
        ``remaining_usd()``, with no await in between, so concurrent attempts cannot both
        reserve the same room). ``category``: what the ledger files it under (``agent``,
        ``orchestration``)."""
        reservation = Reservation(usd=max(0.0, usd))
        self.in_flight.append(reservation)
        if self._ledger is not None:
            reservation.seq = await self._ledger.started(model_requested, reservation.usd, category)
        return reservation

    async def release(self, reservation: Reservation) -> None:
        """The request was not billed (refused before sending, or the provider answered an
        error): stop holding its reservation."""
        self._drop(reservation)
        if self._ledger is not None and reservation.seq is not None:
            await self._ledger.released(reservation.seq)

    async def record(self, usage: RequestUsage, reservation: Reservation | None = None) -> None:
        """Count one finished model request (call it even when the request's reply is unusable)."""
        self.requests.append(usage)
        self.usage = self.usage + usage.as_usage()
        if reservation is not None:
            self._drop(reservation)
            if self._ledger is not None and reservation.seq is not None:
                await self._ledger.finished(reservation.seq, usage)
                return
        if self._sink is not None:
            await self._sink(usage)

    def _drop(self, reservation: Reservation) -> None:
        self.in_flight = [r for r in self.in_flight if r is not reservation]

    def remaining_usd(self) -> float | None:
        """USD the caps still allow for this attempt's next request; None when uncapped."""
        if self._remaining is not None:
            return self._remaining()
        if self._budget is None:
            return None
        held = self.usage.cost_usd + sum(r.usd for r in self.in_flight)
        return max(0.0, self._budget - held)

    def note_context(self, manifest: dict[str, Any]) -> None:
        """Record what went into the attempt (see ``stageflow.subagents.context``)."""
        self.context = manifest


class RequestLedger(Protocol):
    """Where an attempt's requests are recorded as they start and end (the engine's ledger)."""

    async def started(
        self, model_requested: str, reserved_usd: float, category: str = "agent"
    ) -> int: ...

    async def finished(self, seq: int, usage: RequestUsage) -> None: ...

    async def released(self, seq: int) -> None: ...


JournalEntry = ev.DebateTurn | ev.DebateVerdict


class StageJournal:
    """What a runner logs while its attempt runs (a debate's turns and verdicts).

    ``entries`` starts with what earlier attempts of the stage logged since its last fresh
    start, so a resumed attempt continues where the killed one stopped; ``await record(e)``
    commits ``e`` to the run's log before it returns (a journal built without a sink only
    collects, for runners used without the engine).
    """

    def __init__(
        self,
        prior: Sequence[JournalEntry] = (),
        sink: Callable[[JournalEntry], Awaitable[object]] | None = None,
    ) -> None:
        self.entries: list[JournalEntry] = list(prior)
        self._sink = sink

    async def record(self, entry: JournalEntry) -> None:
        if self._sink is not None:
            await self._sink(entry)
        self.entries.append(entry)


class InputArtifact(Model):
    """An upstream artifact named in ``needs`` (or this stage's previous version on a rework)."""

    stage: str
    name: str
    version: int
    content: str


class AttemptRequest(Model):
    """Everything one fresh-context attempt may see."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    stage: StageSpec
    attempt: int
    kind: Literal["initial", "retry", "rework", "resume", "rerun"] = "initial"
    task: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    agent: AgentDefinition | None = None  # None for command stages
    model: str | None = None  # resolved: stage model > agent model > default
    artifacts: list[InputArtifact] = Field(default_factory=list)
    previous: list[InputArtifact] = Field(default_factory=list)  # own artifacts, on a rework
    feedback: str | None = None
    workdir: Path
    budget_remaining_usd: float | None = None
    timeout: float | None = None
    bash_allow: list[str] = Field(default_factory=list)  # command patterns the template allows
    workspace_mode: Literal["auto", "worktree", "in_place"] | None = None  # the template's
    writable: bool = True  # False: file tools refuse writes, saying ``read_only_reason``
    read_only_reason: str = ""
    # in a git run: the worktree the attempt works in (None: the run's workspace as it is)
    lane: Lane | None = None
    verify: str | None = None  # at a join: the command checking the merges, run first
    merged: list[str] = Field(default_factory=list)  # the stages merged for this join
    # a plan stage: what its plan may contain (the runner checks it before finishing)
    plan_limits: PlanLimits | None = None
    meter: AttemptMeter = Field(default_factory=AttemptMeter, exclude=True, repr=False)
    journal: StageJournal = Field(default_factory=StageJournal, exclude=True, repr=False)
    # a debate stage's agents by name (participants and moderator), from the run's snapshot
    panel: dict[str, AgentDefinition] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        # a request built without the engine (tests, direct use) still caps by its own budget
        if self.meter._budget is None and self.meter._remaining is None:
            self.meter._budget = self.budget_remaining_usd


class AttemptResult(Model):
    """What a runner hands back; artifacts are name -> text."""

    status: AttemptStatus
    summary: str = ""
    artifacts: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None  # the model that answered
    model_requested: str | None = None  # the resolved model id asked for (after aliases)
    runner: str = "unknown"  # offline | anthropic | claude-code | command | debate
    error: str | None = None
    plan: dict[str, Any] | None = None  # a plan stage's plan, ``{"items": [...]}``


class Runner(Protocol):
    """Runs one stage attempt. Implementations must be cancellation-safe."""

    name: str

    async def run(self, request: AttemptRequest) -> AttemptResult: ...


_SNAPSHOT = re.compile(r"-(\d{8}|latest)$")


def same_model(requested: str | None, answered: str | None) -> bool:
    """True when ``answered`` is the model asked for, or a dated snapshot of it
    (``claude-sonnet-4-6`` answered as ``claude-sonnet-4-6-20260101``; ``-latest`` likewise).
    Unknown sides match."""
    if not requested or not answered or requested == answered:
        return True
    return _SNAPSHOT.sub("", requested) == _SNAPSHOT.sub("", answered)


def undeclared_artifacts(names: Sequence[str], declared: Sequence[str]) -> str:
    """The refusal of artifacts a stage does not declare (``produces``)."""
    listed = ", ".join(declared) if declared else "none"
    return (
        f"undeclared artifact(s): {', '.join(names)}; this stage produces only: {listed} "
        "(put small values in outputs; a template may allow more with produces_extra: true)"
    )
