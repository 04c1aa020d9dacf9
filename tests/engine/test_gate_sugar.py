"""Gate sugar over a stage's upstream: ``all_passed``, ``any_approved``, ``{must_pass: N}``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.workflows.spec import WorkflowSpec
from tests.engine.harness import FakeRunner, default_result, engine_env

pytestmark = pytest.mark.anyio


def _template(gate: str) -> str:
    reviews = "\n".join(f"  - {{id: r{i}, agent: worker, produces: [note]}}" for i in range(3))
    return (
        "name: sugar\nstages:\n"
        f"{reviews}\n"
        "  - id: ship\n    agent: worker\n    depends_on: [r0, r1, r2]\n"
        f"    produces: [out]\n    gate: {gate}\n"
    )


async def _one_asks_for_changes(req: AttemptRequest) -> AttemptResult:
    result = default_result(req)
    return result.model_copy(update={"status": "changes_requested"})


@pytest.mark.parametrize(
    ("gate", "runs"),
    [
        ("'{must_pass: 2}'", True),
        ("'{must_pass: 3}'", False),
        ("all_passed", False),
        ("passed == 2", True),
        ("not all_passed", True),
    ],
)
async def test_sugar_counts_the_upstream_that_passed(tmp_path: Path, gate: str, runs: bool) -> None:
    gate_yaml = gate.strip("'") if gate.startswith("'") else gate
    runner = FakeRunner({"r1": _one_asks_for_changes})
    async with engine_env(tmp_path, _template(gate_yaml), runner=runner) as env:
        run = await env.service.start_run("sugar", "task")
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run.run_id, until="idle")
    ship = state.stages["ship"]
    assert (ship.status == "succeeded") is runs, (gate, ship.status, ship.reason)
    if not runs:
        assert ship.status == "blocked"


async def test_any_approved_reads_an_upstream_human_approval(tmp_path: Path) -> None:
    template = (
        "name: approved\nstages:\n"
        "  - {id: design, agent: worker, produces: [d], approval: required}\n"
        "  - {id: build, agent: worker, depends_on: [design], produces: [b], gate: any_approved}\n"
    )
    async with engine_env(tmp_path, template) as env:
        run = await env.service.start_run("approved", "task")
        with anyio.fail_after(10):
            await env.scheduler.drive(run.run_id, until="idle")
        await env.service.decide(run.run_id, stage="design", decision="approve", via="cli")
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run.run_id, until="terminal")
    assert state.stages["build"].status == "succeeded"


def test_the_sugar_is_validated() -> None:
    spec = WorkflowSpec.model_validate(
        {"name": "x", "stages": [{"id": "a", "agent": "w", "gate": {"must_pass": 1}}]}
    )
    assert spec.stages[0].gate == "passed >= 1"
    for bad in ({"must_pass": 0}, {"must_pass": True}, {"must_pass": 1, "x": 2}):
        with pytest.raises(ValueError, match=r"must_pass|gate must be"):
            WorkflowSpec.model_validate(
                {"name": "x", "stages": [{"id": "a", "agent": "w", "gate": bad}]}
            )
