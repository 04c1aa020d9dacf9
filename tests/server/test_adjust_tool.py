"""``workflow_adjust`` through a real MCP client session, in both protocol eras: each
adjustment, what status and the audit log then show, and refusals as tool errors that say what
is valid (a cycle, an unknown agent, a stage that is not optional, a human's gate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from stageflow.config import load_settings
from stageflow.server.app import build_server
from stageflow.subagents.offline.runner import SCRIPT_ENV
from tests.server.human import Person

pytestmark = pytest.mark.anyio

GATED = """\
name: gated
description: tests, then a ship stage behind a gate
stages:
  - {id: tests, agent: tester, produces: [test_report]}
  - id: ship
    agent: devops
    depends_on: [tests]
    needs: [tests.test_report]
    produces: [deploy_plan]
    gate: tests.outputs.passed == true
"""


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


def refused(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return text(result)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "gated.yaml").write_text(GATED, encoding="utf-8")
    return root


async def status(client: Client, run_id: str, until: Any) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            run = ok(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]
            if until(run):
                return run
            await anyio.sleep(0.05)


def stages(run: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in run["stages"]}


async def test_each_adjustment_and_its_refusals(project: Path, mode: str) -> None:
    async with Client(build_server(load_settings(project)), mode=mode) as client:
        start = {"template": "feature_development", "task": "CSV export"}
        rid = ok(await client.call_tool("workflow_start", start))["run_id"]
        await status(client, rid, lambda r: r["status"] == "waiting")

        async def adjust(**args: Any) -> CallToolResult:
            return await client.call_tool("workflow_adjust", {"run_id": rid, **args})

        added = ok(
            await adjust(
                action="add_stage",
                stage="lint",
                agent="reviewer",
                depends_on=["implementation"],
                needs=["implementation.patch_summary"],
                produces=["lint_report"],
                before=["review"],
                reason="the human wants a lint pass",
            )
        )
        assert added["adjustment"] == (
            "mcp-client added stage 'lint' (reviewer) after implementation, before review "
            "(the human wants a lint pass)"
        )
        assert added["stages"]["lint"] == "pending"

        cycle = refused(
            await adjust(
                action="add_stage",
                stage="loop",
                agent="reviewer",
                depends_on=["testing"],
                before=["implementation"],
            )
        )
        assert "makes a dependency cycle: implementation -> loop -> testing -> implementation" in (
            cycle
        )
        unknown = refused(
            await adjust(action="add_stage", stage="x", agent="wizard", depends_on=["testing"])
        )
        assert "unknown agent 'wizard'" in unknown and "decision-maker" in unknown
        missing = refused(
            await adjust(action="add_stage", stage="x", agent="tester", needs=["a.b"])
        )
        assert "needs 'a.b' must be <stage>.<artifact> of an upstream stage" in missing
        not_optional = refused(await adjust(action="skip_stage", stage="testing"))
        assert "stage 'testing' is not optional" in not_optional and "lint" in not_optional
        lower = refused(await adjust(action="set_concurrency", max_concurrent_agents=1))
        assert "give a number from 3 to 64" in lower
        human = refused(await adjust(action="escalate", stage="architecture"))
        assert "waits for a human approval; only a human decides it" in human
        no_stage = refused(await adjust(action="skip_stage", stage="nope"))
        assert "unknown stage 'nope'" in no_stage and "architecture" in no_stage
        bad_action = refused(await adjust(action="rename"))
        assert "action" in bad_action and "add_stage" in bad_action

        raised = ok(await adjust(action="set_concurrency", max_concurrent_agents=4))
        assert raised["adjustment"] == "mcp-client set max_concurrent_agents to 4"
        skipped = ok(await adjust(action="skip_stage", stage="lint", reason="not needed"))
        assert skipped["stages"]["lint"] == "skipped"

        run = ok(await client.call_tool("workflow_status", {"run_id": rid}))["run"]
        assert run["adjustments"] == [
            added["adjustment"],
            "mcp-client set max_concurrent_agents to 4",
            "mcp-client skipped stage 'lint' (not needed)",
        ]
    audit_events = await _events(project, rid)
    kinds = [(e["action"], e.get("stage")) for e in audit_events if e["type"] == "run_adjusted"]
    assert kinds == [("add_stage", "lint"), ("set_concurrency", None), ("skip_stage", "lint")]


async def _events(project: Path, run_id: str) -> list[dict[str, Any]]:
    from stageflow.store.store import Store

    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        envs = await store.load_events(run_id)
    return [e.event.model_dump(mode="json") for e in envs]


async def test_escalating_a_false_gate_hands_it_to_a_decision_agent(
    project: Path, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"tests": {"outputs": {"passed": False}}}), encoding="utf-8")
    monkeypatch.setenv(SCRIPT_ENV, str(script))
    async with Client(build_server(load_settings(project)), mode=mode) as client:
        start = {"template": "gated", "task": "ship it"}
        rid = ok(await client.call_tool("workflow_start", start))["run_id"]
        run = await status(client, rid, lambda r: r["status"] == "waiting")
        assert [(w["stage"], w["kind"]) for w in run["waiting"]] == [("ship", "gate")]
        done = ok(
            await client.call_tool(
                "workflow_adjust", {"run_id": rid, "action": "escalate", "stage": "ship"}
            )
        )
        assert done["adjustment"] == "mcp-client escalated stage 'ship' to decision-maker"
        # the offline decision agent approves: the stage runs, the run completes
        run = await status(client, rid, lambda r: r["status"] == "completed")
    assert stages(run)["ship.decision1"] == "succeeded"
    assert stages(run)["ship"] == "succeeded"


async def test_an_escalation_that_reached_a_human_cannot_be_handed_to_a_model(
    project: Path, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "tests": {"outputs": {"passed": False}},
                "ship.decision1": {"outputs": {"ruling": "human", "feedback": "risky"}},
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv(SCRIPT_ENV, str(script))
    async with Client(build_server(load_settings(project)), mode=mode) as client:
        rid = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "x"}))[
            "run_id"
        ]
        await status(client, rid, lambda r: r["status"] == "waiting")
        ok(
            await client.call_tool(
                "workflow_adjust", {"run_id": rid, "action": "escalate", "stage": "ship"}
            )
        )
        run = await status(
            client, rid, lambda r: [w["kind"] for w in r["waiting"]] == ["escalation"]
        )
        assert "handed to a human by agent:decision-maker: risky" in run["waiting"][0]["what"]
        again = refused(
            await client.call_tool(
                "workflow_adjust",
                {"run_id": rid, "action": "escalate", "stage": "ship", "agent": "tester"},
            )
        )
        assert "only a human decision passes it" in again
        assert (
            stages(ok(await client.call_tool("workflow_status", {"run_id": rid}))["run"])["ship"]
            == "blocked"
        )
        # the assistant's own workflow_approve cannot decide it: there is nobody to ask here
        decide = {"run_id": rid, "stage": "ship", "decision": "approve", "approver": "alice"}
        nobody = refused(await client.call_tool("workflow_approve", decide))
        assert "needs a person's decision" in nobody and "stageflow approve" in nobody
        assert (
            stages(ok(await client.call_tool("workflow_status", {"run_id": rid}))["run"])["ship"]
            == "blocked"
        )
    # a person at the client answers the question: their answer decides (a rejection here,
    # whatever the model proposed), and it is recorded as theirs
    person = Person("bob", decision="reject", feedback="not this week")
    server = build_server(load_settings(project))
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        ok(await client.call_tool("workflow_approve", decide))
        assert (
            "escalated to you" in person.asked[0]
            and "Only your answer decides" in (person.asked[0])
        )
        run = await status(client, rid, lambda r: r["status"] == "failed")
    assert stages(run)["ship"] == "failed"
    decided = [e for e in await _events(project, rid) if e["type"] == "escalation_decided"]
    assert [(d["decision"], d["approver"], d["by_agent"]) for d in decided][-1] == (
        "reject",
        "bob",
        False,
    )
