"""A pure harness for the engine: build logs by hand, fold them, ask the planner. No I/O."""

from __future__ import annotations

from typing import Any

from stageflow import events as ev
from stageflow.engine.planner import Plan, next_actions
from stageflow.engine.state import RunState, apply, fold
from stageflow.usage import Usage
from stageflow.workflows.spec import WorkflowSpec


class Log:
    """An in-memory event log with a clock the test controls."""

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        task: str = "do it",
        budget: float | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        self.now = 1000.0
        wf = WorkflowSpec.model_validate(spec)
        created = ev.RunCreated(
            template=wf.name,
            task=task,
            inputs=inputs or {},
            spec=wf.model_dump(mode="json"),
            budget_usd=budget,
        )
        self.envs = [ev.seal("r-test", 1, self.now, "test", created, ev.GENESIS_HASH)]
        self.state: RunState = fold(self.envs)

    def add(self, *events: ev.Event) -> RunState:
        for e in events:
            env = ev.seal("r-test", self.state.seq + 1, self.now, "test", e, self.state.head_hash)
            self.envs.append(env)
            self.state = apply(self.state, env)
        return self.state

    def plan(self) -> Plan:
        return next_actions(self.state, self.now)

    def step(self) -> Plan:
        """Append the planner's decisions and starts (as AttemptStarted); return the plan."""
        plan = self.plan()
        self.add(*plan.decisions)
        for s in plan.starts:
            self.add(ev.AttemptStarted(stage=s.stage, attempt=s.attempt, kind=s.kind))
        return plan

    def finish(
        self,
        stage: str,
        outcome: ev.AttemptOutcome = "passed",
        *,
        outputs: dict[str, Any] | None = None,
        cost: float = 0.0,
        artifacts: dict[str, int] | None = None,
        error: str | None = None,
    ) -> RunState:
        st = self.state.stages[stage]
        refs = [
            ev.ArtifactRef(name=n, version=v, size=10, sha256="0" * 64)
            for n, v in (artifacts or {}).items()
        ]
        return self.add(
            ev.AttemptFinished(
                stage=stage,
                attempt=st.attempt,
                outcome=outcome,
                outputs=outputs or {},
                usage=Usage(cost_usd=cost),
                artifacts=refs,
                error=error,
            )
        )

    def status(self, stage: str) -> str:
        return self.state.stages[stage].status


def chain(*ids: str, **extra: Any) -> dict[str, Any]:
    """A linear template a -> b -> c with developer agents."""
    stages = []
    prev = None
    for sid in ids:
        s: dict[str, Any] = {"id": sid, "agent": "developer"}
        if prev:
            s["depends_on"] = [prev]
        s.update(extra.get(sid, {}))
        stages.append(s)
        prev = sid
    return {"name": "t", "stages": stages}
