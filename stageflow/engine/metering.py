"""``RunMeters``: the meters of one run's attempts in flight.

Each attempt's meter records every model request in the cost ledger as it is sent (with the
worst case reserved for it) and as it returns, and answers what the run and stage caps still
allow, counting the live spend and reservations of the run's other attempts in flight, so
concurrent attempts share one budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.planner import StartAttempt
from stageflow.engine.runner import AttemptMeter
from stageflow.engine.state import RunState
from stageflow.store.rows import RequestRow
from stageflow.store.store import Store
from stageflow.usage import RequestUsage, Usage

Announce = Callable[[float], Awaitable[None]]


def ledger_usage(rows: Sequence[RequestRow]) -> Usage:
    """The attempt-level total of ledger rows. A request sent but never recorded (its process
    died in between) counts its reservation: it may well have been billed."""
    fields = RequestUsage.model_fields
    total = Usage()
    for r in rows:
        request = RequestUsage(**{k: v for k, v in vars(r).items() if k in fields})
        total = total + request.model_copy(update={"cost_usd": r.spent_usd}).as_usage()
    return total


def attempt_usage(meter: AttemptMeter, *, cut_short: bool = False) -> Usage:
    """What an attempt spent: its recorded requests, plus the reservations of requests it
    abandoned in flight (a timeout or cancel: the provider may well bill them). An attempt
    ``cut_short`` (timed out or cancelled before its runner reported) whose runner held an
    attempt-level reservation (Claude Code's ``--max-budget-usd`` share) counts at least that
    share: the killed process's last request is not in its stream yet."""
    usage = meter.usage
    abandoned = sum(r.usd for r in meter.in_flight)
    if abandoned:
        usage = usage + Usage(cost_usd=round(abandoned, 10), requests=len(meter.in_flight))
    if cut_short and meter.reserved > usage.cost_usd:
        usage = usage.model_copy(update={"cost_usd": round(meter.reserved, 10)})
    return usage


class _AttemptLedger:
    """The ledger rows of one attempt: requests recorded as they start and as they end."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        stage: str,
        attempt: int,
        clock: Callable[[], float],
        announce: Announce | None = None,
    ) -> None:
        self.store, self.run_id, self.stage, self.attempt = store, run_id, stage, attempt
        self.clock = clock
        self.announce = announce

    async def started(
        self, model_requested: str, reserved_usd: float, category: str = "agent"
    ) -> int:
        if self.announce is not None:  # in the run's log before it is sent
            await self.announce(reserved_usd)
        row = RequestRow(
            stage=self.stage,
            attempt=self.attempt,
            model_requested=model_requested,
            model=model_requested,
            reserved_usd=reserved_usd,
            done=False,
            category=category,
        )
        return await self.store.ledger.record(self.run_id, row, at=self.clock())

    async def finished(self, seq: int, usage: RequestUsage) -> None:
        row = RequestRow(stage=self.stage, attempt=self.attempt, seq=seq, **usage.model_dump())
        await self.store.ledger.finish(self.run_id, row)

    async def released(self, seq: int) -> None:
        await self.store.ledger.release(self.run_id, self.stage, self.attempt, seq)


class RunMeters:
    """Meters by (stage, attempt); ``state`` gives the driver's current run state."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        state: Callable[[], RunState],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.state = state
        self.clock = clock
        self._meters: dict[tuple[str, int], AttemptMeter] = {}

    def get(self, stage: str, attempt: int) -> AttemptMeter | None:
        return self._meters.get((stage, attempt))

    def held_usd(self) -> float:
        """What the run's attempts in flight hold of its caps (spend or reservation)."""
        return sum(m.held_usd() for m in self._meters.values())

    def close(self, stage: str, attempt: int) -> None:
        """Stop counting the attempt as live (its spend is in the run state now, or lost)."""
        self._meters.pop((stage, attempt), None)

    def open(
        self,
        start: StartAttempt,
        agent: AgentDefinition | None,
        *,
        key: str | None = None,
        announce: Announce | None = None,
    ) -> AttemptMeter:
        """The attempt's meter: every model request goes to the ledger as it returns, and the
        caps count the live spend of this run's other attempts in flight. ``key``: a meter
        of the attempt's besides its own (an orchestrator question about it), kept apart;
        ``announce(usd)``: awaited with each request's reservation before it is sent."""
        run_id, stage, attempt = self.run_id, start.stage, start.attempt
        mine_key = (key or stage, attempt)
        spec = self.state().stage_spec(stage)
        stage_cap = spec.budget_usd if spec.budget_usd is not None else None
        if stage_cap is None and agent is not None:
            stage_cap = agent.budget_usd

        async def sink(usage: RequestUsage) -> None:
            row = RequestRow(stage=stage, attempt=attempt, **usage.model_dump())
            await self.store.ledger.record(run_id, row, at=self.clock())

        def others() -> list[AttemptMeter]:
            return [m for k, m in self._meters.items() if k != mine_key]

        def remaining() -> float | None:
            st = self.state()
            mine = self._meters.get(mine_key)
            own = 0.0
            if mine is not None:
                own = mine.usage.cost_usd + sum(r.usd for r in mine.in_flight)
            left: float | None = None
            if st.budget_usd is not None:
                held = sum(m.held_usd() for m in others())
                left = st.budget_usd - st.spent_usd - held - own
            if stage_cap is not None:
                stage_state = st.stages[stage]
                stage_left = stage_cap - stage_state.capped_usd - own
                left = stage_left if left is None else min(left, stage_left)
            return None if left is None else max(0.0, round(left, 10))

        def sharers() -> int:
            return 1 + sum(1 for m in others() if m.reserved == 0.0)

        ledger = _AttemptLedger(self.store, run_id, stage, attempt, self.clock, announce)
        meter = AttemptMeter(sink=sink, remaining=remaining, sharers=sharers, ledger=ledger)
        self._meters[mine_key] = meter
        return meter
