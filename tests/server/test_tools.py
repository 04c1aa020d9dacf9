"""The MCP tools through the in-process client, in both protocol eras: the tool list (pinned as a
snapshot), templates, start, control, and how domain errors reach the client."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent

from stageflow.config import load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.server.app import build_server
from stageflow.tools import TOOL_NAMES

MODES = ["auto", "legacy"]
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"
UPDATE_ENV = "STAGEFLOW_UPDATE_SNAPSHOTS"

GATED = """\
name: gated
description: One design stage that a human approves
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: required
"""


class HangingRunner:
    """Every attempt runs until cancelled, so a run stays ``running``."""

    name = "hanging"

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def run(self, request: AttemptRequest) -> AttemptResult:
        self.started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / ".stageflow" / "workflows").mkdir(parents=True)
    (project / ".stageflow" / "workflows" / "gated.yaml").write_text(GATED, encoding="utf-8")
    return project


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_for(tmp_path: Path) -> Callable[..., Any]:
    project = make_project(tmp_path)

    def build(runner: Any = None) -> Any:
        return build_server(load_settings(project), runner=runner)

    return build


# -- the tool list ------------------------------------------------------------------------


def _tool_list(tools: list[Any]) -> list[dict[str, Any]]:
    return sorted(
        (t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools),
        key=lambda t: t["name"],
    )


@pytest.mark.anyio
async def test_tool_list_matches_the_pinned_snapshot(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(), mode=mode) as client:
        tools = _tool_list((await client.list_tools()).tools)
    rendered = json.dumps(tools, indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV):
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    assert SNAPSHOT.is_file(), f"no snapshot yet: run with {UPDATE_ENV}=1"
    assert rendered == SNAPSHOT.read_text(encoding="utf-8"), (
        f"the tool list changed; review the diff and regenerate with {UPDATE_ENV}=1"
    )


@pytest.mark.anyio
async def test_every_contract_tool_has_schemas_and_a_short_description(
    server_for: Callable[..., Any],
) -> None:
    async with Client(server_for()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(tools) == sorted(TOOL_NAMES)
    assert "knowledge_lookup" in tools
    for tool in tools.values():
        assert tool.description is not None
        assert 200 < len(tool.description.encode()) < 2048, tool.name
        assert tool.output_schema is not None, tool.name
        for prop in tool.input_schema.get("properties", {}).values():
            assert prop.get("description"), f"{tool.name}: argument without description"


@pytest.mark.anyio
async def test_server_instructions_explain_the_calling_protocol(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(), mode=mode) as client:
        instructions = client.instructions
    assert instructions is not None
    for tool in ("workflow_start", "workflow_status", "workflow_approve", "workflow_artifact"):
        assert tool in instructions


# -- templates and start ------------------------------------------------------------------


@pytest.mark.anyio
async def test_templates_lists_stages_gates_and_agents_and_reports_broken_files(
    tmp_path: Path, server_for: Callable[..., Any], mode: str
) -> None:
    workflows = tmp_path / "project" / ".stageflow" / "workflows"
    (workflows / "broken.yaml").write_text("name: broken\nstages: 3\n", encoding="utf-8")
    agents = tmp_path / "project" / ".stageflow" / "agents"
    agents.mkdir()
    (agents / "bad.md").write_text("---\nname: [unclosed\n---\nbody\n", encoding="utf-8")
    async with Client(server_for(), mode=mode) as client:
        result = await client.call_tool("workflow_templates", {})
        detailed = await client.call_tool("workflow_templates", {"detail": "full"})
    data = ok(result)
    templates = {t["name"]: t for t in data["templates"]}
    assert {"bugfix", "feature_development", "gated", "broken"} <= set(templates)
    bugfix = {s["id"]: s for s in templates["bugfix"]["stages"]}
    assert bugfix["deployment"]["approval"] is True and bugfix["deployment"]["gate"] is True
    assert bugfix["fix"]["after"] == ["investigation"] and bugfix["fix"]["agent"] == "developer"
    assert "task" not in templates["bugfix"]["inputs"]  # workflow_start's own argument
    assert templates["bugfix"]["inputs"]["severity"] == {
        "type": "string",
        "required": False,
        "default": "medium",
    }
    assert templates["broken"]["problems"] and templates["broken"]["stages"] == []
    architect = next(a for a in data["agents"] if a["name"] == "architect")
    assert architect["model"] == "opus"
    assert any("bad.md" in e for e in data["errors"])
    assert data["runner"].startswith("offline")
    assert data["full"] is None
    assert "gated: One design stage" in text(result)
    # detail="full": the whole catalog read model, as `stageflow templates --json` shows it
    full = ok(detailed)["full"]
    full_bugfix = next(t for t in full["templates"] if t["name"] == "bugfix")
    deployment = next(s for s in full_bugfix["stages"] if s["id"] == "deployment")
    assert deployment["gate"] == "testing.outputs.passed == true"
    assert full_bugfix["inputs"]["task"]["required"] is True
    assert next(a for a in full["agents"] if a["name"] == "architect")["layer"] == "builtin"


@pytest.mark.anyio
async def test_start_returns_the_run_id_at_once_while_the_stage_keeps_running(
    server_for: Callable[..., Any], mode: str
) -> None:
    runner = HangingRunner()
    async with Client(server_for(runner), mode=mode) as client:
        with anyio.fail_after(1):
            result = await client.call_tool("workflow_start", {"template": "gated", "task": "t"})
        data = ok(result)
        assert data["run_id"].startswith("r-")
        assert data["stages"] == ["design"]
        assert data["run_id"] in text(result)
        with anyio.fail_after(5):
            await runner.started.wait()  # executed in the background, between tool calls
        status = ok(await client.call_tool("workflow_status", {"run_id": data["run_id"]}))
    assert status["run"]["stages"][0]["status"] == "running"


@pytest.mark.anyio
async def test_status_without_run_id_lists_recent_runs(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(HangingRunner()), mode=mode) as client:
        empty = await client.call_tool("workflow_status", {})
        assert ok(empty)["runs"] == [] and "no runs yet" in text(empty)
        first = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "a"}))
        second = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "b"}))
        listed = ok(await client.call_tool("workflow_status", {}))
    assert [r["run_id"] for r in listed["runs"]] == [second["run_id"], first["run_id"]]
    assert listed["run"] is None


# -- control --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_control_pauses_resumes_and_cancels_a_run(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(HangingRunner()), mode=mode) as client:
        run_id = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "t"}))[
            "run_id"
        ]
        paused = ok(
            await client.call_tool(
                "workflow_control", {"run_id": run_id, "action": "pause", "reason": "lunch"}
            )
        )
        assert paused["status"] == "paused" and paused["action"] == "pause"
        resumed = ok(
            await client.call_tool("workflow_control", {"run_id": run_id, "action": "resume"})
        )
        assert resumed["status"] != "paused"
        cancelled = ok(
            await client.call_tool(
                "workflow_control", {"run_id": run_id, "action": "cancel", "reason": "wrong task"}
            )
        )
        assert cancelled["status"] == "cancelled"
        again = await client.call_tool("workflow_control", {"run_id": run_id, "action": "retry"})
    assert again.is_error
    assert "was cancelled" in text(again)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_unknown_names_are_tool_errors_listing_the_known_ones(
    server_for: Callable[..., Any], mode: str
) -> None:
    """SEP-1303: an unknown run, stage, template or artifact is a tool execution error the
    model reads and corrects, not a JSON-RPC error."""

    async def invalid(tool: str, args: dict[str, Any]) -> str:
        result = await client.call_tool(tool, args)
        assert result.is_error, tool
        assert not text(result).startswith("Error executing tool"), text(result)
        return text(result)

    async with Client(server_for(HangingRunner()), mode=mode) as client:
        bad_template = await invalid("workflow_start", {"template": "nope", "task": "t"})
        assert "unknown template 'nope'" in bad_template
        assert "bugfix" in bad_template and "gated" in bad_template

        no_runs = await invalid("workflow_status", {"run_id": "r-missing"})
        assert "unknown run 'r-missing' (there is no run yet)" in no_runs
        assert "workflow_status() without run_id lists recent runs" in no_runs

        run_id = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "t"}))[
            "run_id"
        ]
        calls: list[tuple[str, dict[str, Any]]] = [
            ("workflow_status", {"run_id": "r-missing"}),
            ("workflow_approve", {"run_id": "r-missing", "decision": "approve"}),
            ("workflow_control", {"run_id": "r-missing", "action": "cancel"}),
            ("workflow_artifact", {"run_id": "r-missing", "stage": "design", "name": "design"}),
        ]
        for tool, args in calls:
            message = await invalid(tool, args)
            assert "unknown run 'r-missing'" in message, tool
            assert run_id in message, tool

        missing_art = await invalid(
            "workflow_artifact", {"run_id": run_id, "stage": "design", "name": "nope"}
        )
        assert "unknown artifact 'design/nope'" in missing_art
        missing_stage = await invalid(
            "workflow_control", {"run_id": run_id, "action": "retry", "stage": "nope"}
        )
        assert "unknown stage 'nope'; known: design" in missing_stage
        # the server keeps serving after errors
        assert ok(await client.call_tool("workflow_status", {"run_id": run_id}))


@pytest.mark.anyio
async def test_an_unknown_tool_is_a_protocol_error_naming_the_tools(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(HangingRunner()), mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("workflow_aprove", {"run_id": "r"})
    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message.startswith("unknown tool 'workflow_aprove'; tools: ")
    assert "workflow_approve" in caught.value.error.message


@pytest.mark.anyio
async def test_a_bad_argument_value_is_one_line_naming_the_allowed_values(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(HangingRunner()), mode=mode) as client:
        typo = await client.call_tool("workflow_approve", {"run_id": "r", "decision": "aprove"})
        missing = await client.call_tool("workflow_start", {"template": "gated"})
        negative = await client.call_tool("workflow_status", {"run_id": "r", "wait_seconds": -1})
    assert typo.is_error and missing.is_error and negative.is_error
    assert text(typo) == (
        "invalid arguments for workflow_approve: decision='aprove' is not allowed: "
        "use 'approve' or 'reject'"
    )
    assert text(missing) == "invalid arguments for workflow_start: task is required"
    assert text(negative) == (
        "invalid arguments for workflow_status: wait_seconds=-1: "
        "input should be greater than or equal to 0"
    )
    for result in (typo, missing, negative):
        assert "\n" not in text(result) and "pydantic" not in text(result)


@pytest.mark.anyio
async def test_state_conflicts_and_bad_arguments_are_readable_errors(
    server_for: Callable[..., Any], mode: str
) -> None:
    runner = HangingRunner()
    async with Client(server_for(runner), mode=mode) as client:
        run_id = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "t"}))[
            "run_id"
        ]
        with anyio.fail_after(5):
            await runner.started.wait()
        not_waiting = await client.call_tool(
            "workflow_approve", {"run_id": run_id, "stage": "design", "decision": "approve"}
        )
        assert not_waiting.is_error
        assert "stage 'design' is not waiting for a decision (it is running)" in text(not_waiting)

        no_feedback = await client.call_tool(
            "workflow_approve", {"run_id": run_id, "stage": "design", "decision": "reject"}
        )
        assert no_feedback.is_error and "needs feedback" in text(no_feedback)

        bad_decision = await client.call_tool(
            "workflow_approve", {"run_id": run_id, "decision": "maybe"}
        )
        assert bad_decision.is_error and "decision" in text(bad_decision)

        bad_action = await client.call_tool(
            "workflow_control", {"run_id": run_id, "action": "explode"}
        )
        assert bad_action.is_error and "action" in text(bad_action)

        bad_input = await client.call_tool(
            "workflow_start", {"template": "bugfix", "task": "t", "budget_usd": -1}
        )
        assert bad_input.is_error and "budget_usd" in text(bad_input)

        not_paused = await client.call_tool(
            "workflow_control", {"run_id": run_id, "action": "resume"}
        )
        assert not_paused.is_error and "is not paused" in text(not_paused)

        # the server is still serving after every error
        status = ok(await client.call_tool("workflow_status", {"run_id": run_id}))
    assert status["run"]["status"] == "running"


@pytest.mark.anyio
async def test_build_server_also_serves_the_resources_and_prompts(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(), mode=mode) as client:
        templates = (await client.list_resource_templates()).resource_templates
        prompts = (await client.list_prompts()).prompts
    uris = {t.uri_template for t in templates}
    assert "stageflow://runs/{run_id}" in uris
    assert "stageflow://runs/{run_id}/artifacts/{stage}/{name}" in uris
    assert {"gated", "bugfix"} <= {p.name for p in prompts}


@pytest.mark.anyio
async def test_approving_needs_an_explicit_decision(
    server_for: Callable[..., Any], mode: str
) -> None:
    async with Client(server_for(HangingRunner()), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        run_id = ok(await client.call_tool("workflow_start", {"template": "gated", "task": "t"}))[
            "run_id"
        ]
        bare = await client.call_tool("workflow_approve", {"run_id": run_id})
        status = ok(await client.call_tool("workflow_status", {"run_id": run_id}))
    schema = tools["workflow_approve"].input_schema
    assert "decision" in schema["required"]
    assert "default" not in schema["properties"]["decision"]
    assert bare.is_error
    assert text(bare) == "invalid arguments for workflow_approve: decision is required"
    assert all(s["status"] != "succeeded" for s in status["run"]["stages"])
