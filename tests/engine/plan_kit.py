"""Helpers for the pure plan and loop tests: a plan template, items, and one driver step."""

from __future__ import annotations

from typing import Any

from stageflow import events as ev
from stageflow.engine.planner import StartAttempt
from tests.engine.pure import Log


def plan_template(**execute: Any) -> dict[str, Any]:
    return {
        "name": "pea",
        "limits": {"max_concurrent_agents": 3},
        "stages": [
            {"id": "plan", "agent": "coordinator", "plan": {"max_items": 4}},
            {
                "id": "execute",
                "agent": "developer",
                "for_each": "plan",
                "depends_on": ["plan"],
                "needs": ["plan.plan"],
                "produces": ["summary"],
                **execute,
            },
            {
                "id": "audit",
                "agent": "auditor",
                "depends_on": ["execute"],
                "needs": ["execute.summary"],
                "produces": ["report"],
            },
        ],
    }


def item(item_id: str, *deps: str, files: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": item_id, "title": f"do {item_id}", "depends_on": list(deps), "files": [*files]}


def settle(log: Log) -> list[StartAttempt]:
    """What the driver does in one step: decisions to a fixpoint, then the starts."""
    for _ in range(50):
        plan = log.plan()
        if plan.decisions:
            log.add(*plan.decisions)
            continue
        for s in plan.starts:
            log.add(ev.AttemptStarted(stage=s.stage, attempt=s.attempt, kind=s.kind))
        return plan.starts
    raise AssertionError("the planner did not settle")


def finish(log: Log, stage: str, outcome: ev.AttemptOutcome = "passed", **kw: Any) -> None:
    st = log.state.stages[stage]
    assert st.status == "running", (stage, st.status)
    artifacts = [
        ev.ArtifactRef(name=n, version=st.attempt, size=10, sha256="0" * 64)
        for n in log.state.stage_spec(stage).produces
    ]
    log.add(
        ev.AttemptFinished(
            stage=stage, attempt=st.attempt, outcome=outcome, artifacts=artifacts, **kw
        )
    )


def planned(log: Log, *items: dict[str, Any]) -> list[str]:
    assert [s.stage for s in settle(log)] == ["plan"]
    finish(log, "plan", plan=list(items))
    return [s.stage for s in settle(log)]
