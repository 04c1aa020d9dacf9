"""A person's answer about one stage never lands on another that started waiting while they
read the question (found by review: the tool passed the model's stage=None on, and the engine
chose the waiting stage again when deciding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from stageflow import events as ev
from stageflow.config import load_settings
from stageflow.server.app import build_server
from stageflow.store.store import Store
from tests.server.human import Person
from tests.server.test_tools_run import ok, status_until, waiting_on

pytestmark = pytest.mark.anyio

T = """\
name: two_human
description: two person-only gates in sequence
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: {required: true, by: human}
  - id: deploy
    agent: developer
    depends_on: [design]
    produces: [patch_summary]
    approval: {required: true, by: human}
"""


async def test_an_answer_about_design_never_passes_deploy(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "t.yaml").write_text(T, encoding="utf-8")
    server = build_server(load_settings(root))
    bob = Person("bob")
    async with Client(server, mode="legacy", elicitation_callback=bob) as c2:
        state: dict[str, Any] = {}

        async def ann(context: Any, params: Any) -> ElicitResult:
            state.setdefault("asked", []).append(params.message)
            # while ann reads the question about 'design', bob approves design elsewhere
            ok(
                await c2.call_tool(
                    "workflow_approve",
                    {
                        "run_id": state["run"],
                        "stage": "design",
                        "decision": "approve",
                        "attempt": 1,
                    },
                )
            )
            await status_until(c2, state["run"], waiting_on("deploy"))
            return ElicitResult(action="accept", content={"decision": "approve", "name": "ann"})

        async with Client(server, mode="legacy", elicitation_callback=ann) as c1:
            run_id = ok(
                await c1.call_tool("workflow_start", {"template": "two_human", "task": "x"})
            )["run_id"]
            state["run"] = run_id
            await status_until(c1, run_id, waiting_on("design"))
            late = await c1.call_tool("workflow_approve", {"run_id": run_id, "decision": "approve"})
            assert "stage 'design'" in state["asked"][0]
            # her answer was about design, which bob already passed: refused, deploy waits
            assert late.is_error, late
            run = ok(await c1.call_tool("workflow_status", {"run_id": run_id}))["run"]
            assert [w["stage"] for w in run["waiting"]] == ["deploy"]
    async with await Store.open(root / ".stageflow" / "state.db") as store:
        log = await store.load_events(run_id)
    got = [
        (e.event.stage, e.event.approver) for e in log if isinstance(e.event, ev.ApprovalDecided)
    ]
    # ann was only ever shown 'design'; her answer must not approve 'deploy'
    assert got == [("design", "bob")], got
