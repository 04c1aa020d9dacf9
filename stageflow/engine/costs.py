"""Costs across runs (``stageflow costs``, the dashboard's costs page): the cost ledger summed
by template, agent or model since a moment. The ledger holds every request that was, or may
have been, paid for, whatever became of its attempt or run."""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import Field

from stageflow.base import Model
from stageflow.errors import InvalidArgument
from stageflow.store.rows import RequestRow
from stageflow.store.store import Store

__all__ = ["CostGroup", "CostReport", "GroupBy", "cost_report", "parse_since"]

GroupBy = Literal["template", "agent", "model", "category"]
GROUP_BY: tuple[GroupBy, ...] = ("template", "agent", "model", "category")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class CostGroup(Model):
    key: str
    runs: int
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


class CostReport(Model):
    since: float  # epoch seconds
    by: str
    groups: list[CostGroup] = Field(default_factory=list)
    total_usd: float = 0.0
    runs: int = 0
    requests: int = 0


def parse_since(text: str, *, now: float | None = None) -> float:
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s`` -> the epoch second that long ago."""
    m = _SINCE.match(text)
    if m is None:
        raise InvalidArgument(
            f"--since must be a number and a unit (s, m, h, d, w), like 7d or 12h; got {text!r}"
        )
    return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]


async def cost_report(store: Store, *, since: float, by: GroupBy = "template") -> CostReport:
    """The ledger since ``since`` summed per ``by``, dearest group first."""
    if by not in GROUP_BY:
        raise InvalidArgument(f"by must be one of {', '.join(GROUP_BY)}, got {by!r}")
    totals = await store.ledger.totals(since)
    agents: dict[str, dict[str, str]] = {}
    if by == "agent":
        for run_id in {t.run_id for t in totals}:
            agents[run_id] = await store.ledger.stage_agents(run_id)
    groups: dict[str, tuple[set[str], list[int], float]] = {}
    for t in totals:
        if by == "template":
            key = t.template
        elif by == "model":
            key = t.model or "(unknown)"
        elif by == "category":  # agent work or orchestration (moderators, the orchestrator)
            key = t.category
        else:
            key = agents.get(t.run_id, {}).get(t.stage, f"(stage {t.stage})")
        runs, counts, cost = groups.get(key, (set(), [0, 0, 0, 0, 0], 0.0))
        runs.add(t.run_id)
        values = (
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cache_read_tokens,
            t.cache_write_tokens,
        )
        counts = [a + b for a, b in zip(counts, values, strict=True)]
        groups[key] = (runs, counts, cost + t.cost_usd)
    out = [
        CostGroup(
            key=key,
            runs=len(runs),
            requests=c[0],
            input_tokens=c[1],
            output_tokens=c[2],
            cache_read_tokens=c[3],
            cache_write_tokens=c[4],
            cost_usd=round(cost, 6),
        )
        for key, (runs, c, cost) in groups.items()
    ]
    out.sort(key=lambda g: (-g.cost_usd, g.key))
    return CostReport(
        since=since,
        by=by,
        groups=out,
        total_usd=round(sum(g.cost_usd for g in out), 6),
        runs=len({t.run_id for t in totals}),
        requests=sum(g.requests for g in out),
    )


CHOICE_STAGE = "template=auto"  # the ledger's stage name for the choice made before the run


async def ledger_choice(store: Store, run_id: str, chosen: dict[str, object], at: float) -> None:
    """``template="auto"``: the choice's model request, asked before the run existed, as an
    ``orchestration`` row of the run's ledger (its cost and model; the tokens are not kept)."""
    cost = chosen.get("cost_usd")
    model = chosen.get("model")
    if not isinstance(cost, int | float) or cost <= 0 or not isinstance(model, str):
        return  # the rules chose, or nothing was billed
    row = RequestRow(
        stage=CHOICE_STAGE,
        attempt=0,
        model_requested=model,
        model=model,
        cost_usd=float(cost),
        category="orchestration",
    )
    await store.ledger.record(run_id, row, at=at)
