"""What the model receives stays small: size budgets for tool results and tool definitions.

Claude Code hands the model a tool's ``structuredContent``, so a ``workflow_status`` poll costs
what its structured result weighs. These runs go through a real in-process MCP client with the
offline runner (``benchmarks/result_sizes.py`` prints the same figures).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from stageflow.config import load_settings
from stageflow.server.app import build_server
from tests.server.human import Person

pytestmark = pytest.mark.anyio

# feature_parallel at its release gate (8 stages, one of them with its 3 planned items)
STATUS_AT_GATE_BUDGET = 3 * 1024
# ten built-in templates and twenty agents (the debate templates and agents of issue 16 added
# four and five, about 400 B each in the brief listing)
TEMPLATES_BUDGET = 8 * 1024
# bytes of each tool's definition as tools/list sends it (description + both schemas), and of
# its input schema alone (what a client such as Claude Code passes on to the model)
DEFINITION_BUDGETS = {
    "knowledge_lookup": (5_500, 1_100),
    "workflow_adjust": (3_500, 1_800),
    "workflow_approve": (2_800, 1_000),  # + attempt (issue 11.6), the merge wait kind
    "workflow_artifact": (2_500, 1_000),
    "workflow_control": (2_600, 1_150),  # land added strategy and into
    # start: dry_run and the forecast brief (p50/p90 per stage); status: the forecast against
    # the spend, why each agent and model, and the run's cost confirmation (issue 13)
    "workflow_start": (3_600, 800),  # + dry_run (forecast) and template="auto"
    "workflow_status": (15_600, 800),  # + waiting[].attempt, human_only, approved_by; git views
    "workflow_templates": (6_800, 400),
}


def size(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def wait_gate(client: Client, run_id: str, stage: str) -> dict[str, Any]:
    with anyio.fail_after(60):
        while True:
            status = await call(client, "workflow_status", {"run_id": run_id, "wait_seconds": 5})
            if any(w["stage"] == stage for w in status["run"]["waiting"]):
                return status
            assert status["run"]["status"] not in ("completed", "failed", "cancelled"), status


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    return build_server(load_settings(tmp_path / "project"), watch_files=False)


async def test_status_of_feature_parallel_at_its_gate_fits_the_budget(server: Any) -> None:
    async with Client(server, elicitation_callback=Person()) as client:
        rid = (
            await call(
                client, "workflow_start", {"template": "feature_parallel", "task": "CSV export"}
            )
        )["run_id"]
        await wait_gate(client, rid, "design")
        await call(
            client, "workflow_approve", {"run_id": rid, "stage": "design", "decision": "approve"}
        )
        status = await wait_gate(client, rid, "release")
        full = await call(client, "workflow_status", {"run_id": rid, "detail": "full"})
    run = status["run"]
    assert size(status) <= STATUS_AT_GATE_BUDGET, size(status)
    # it still carries what the assistant acts on: state, model, cost and artifacts per stage
    assert [s["id"] for s in run["stages"]][-1] == "release"
    release = run["stages"][-1]
    assert release["status"] == "awaiting_approval" and release["artifacts"] == [
        "changelog",
        "release_notes",
    ]
    assert all(s["model"] and "cost_usd" in s for s in run["stages"])
    assert run["waiting"] == [
        {
            "stage": "release",
            "kind": "approval",
            "what": run["waiting"][0]["what"],
            "show": ["release/changelog", "release/release_notes"],
            "attempt": 1,
            "human_only": True,
        }
    ]
    assert run["next_action"].startswith("ask the human whether to approve stage release")
    assert f"workflow_approve(run_id='{rid}', stage='release'" in run["next_action"]
    # the history is there on request, not in every poll
    assert status["full"] is None and "history" not in json.dumps(status)
    assert full["full"]["stages"][0]["history"][0]["outcome"] == "passed"
    assert size(full) > 4 * size(status)


async def test_templates_fit_the_budget(server: Any) -> None:
    async with Client(server, elicitation_callback=Person()) as client:
        brief = await call(client, "workflow_templates", {})
        full = await call(client, "workflow_templates", {"detail": "full"})
    assert size(brief) <= TEMPLATES_BUDGET, size(brief)
    assert size(full) > 2 * size(brief)


async def test_every_tool_definition_fits_its_budget(server: Any) -> None:
    async with Client(server, elicitation_callback=Person()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == set(DEFINITION_BUDGETS)
    for name, (whole, inputs) in DEFINITION_BUDGETS.items():
        definition = tools[name].model_dump(mode="json", by_alias=True, exclude_none=True)
        assert size(definition) <= whole, (name, size(definition))
        assert size(tools[name].input_schema) <= inputs, (name, size(tools[name].input_schema))


async def test_next_action_never_gives_a_shell_command(server: Any) -> None:
    async with Client(server, elicitation_callback=Person()) as client:
        rid = (await call(client, "workflow_start", {"template": "bugfix", "task": "crash"}))[
            "run_id"
        ]
        seen = []
        with anyio.fail_after(60):
            while True:
                status = await call(client, "workflow_status", {"run_id": rid, "wait_seconds": 5})
                seen.append(status["run"]["next_action"])
                if status["run"]["status"] != "running":
                    break
        paused = await call(
            client, "workflow_control", {"run_id": rid, "action": "pause", "reason": "lunch"}
        )
        seen.append(paused["next_action"])
        cancelled = await call(client, "workflow_control", {"run_id": rid, "action": "cancel"})
        seen.append(cancelled["next_action"])
    assert any("workflow_approve(" in s for s in seen)
    assert any("workflow_control(" in s and "resume" in s for s in seen)
    for text in seen:
        assert "stageflow " not in text and "`" not in text, text


PLAN_AT_APPROVAL_BUDGET = 2_200  # plan_execute_audit at its approval: 5 stages, 3 items, forecast


async def test_a_planned_stage_shows_its_items_compactly_in_the_status(server: Any) -> None:
    async with Client(server) as client:
        start = {"template": "plan_execute_audit", "task": "CSV export"}
        rid = (await call(client, "workflow_start", start))["run_id"]
        status = await wait_gate(client, rid, "approval")
    run = status["run"]
    assert size(status) <= PLAN_AT_APPROVAL_BUDGET, size(status)
    assert [s["id"] for s in run["stages"]] == ["plan", "execute", "integrate", "audit", "approval"]
    execute = next(s for s in run["stages"] if s["id"] == "execute")
    assert execute["status"] == "succeeded" and execute["model"] == "offline"
    assert execute["items"] == [
        {"id": "t1", "status": "succeeded", "cost_usd": 0.0, "attempts": 1},
        {"id": "t2", "status": "succeeded", "cost_usd": 0.0, "attempts": 1},
        {"id": "t3", "status": "succeeded", "after": ["t1", "t2"], "cost_usd": 0.0, "attempts": 1},
    ]
    assert all(s["items"] is None for s in run["stages"] if s["id"] != "execute")
