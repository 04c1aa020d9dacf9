"""Debates and ``template="auto"`` through the MCP tools (offline runner, in-memory client):
the decision a debate records is found by ``knowledge_lookup``; ``workflow_start`` with
``template="auto"`` chooses by the rules and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from stageflow.config import load_settings
from stageflow.server.app import build_server
from tests.server.test_result_sizes import call

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    return build_server(load_settings(tmp_path / "project"), watch_files=False)


async def _until_done(client: Client, run_id: str) -> dict[str, Any]:
    with anyio.fail_after(60):
        while True:
            status = await call(client, "workflow_status", {"run_id": run_id, "wait_seconds": 5})
            if status["run"]["status"] in ("completed", "failed", "cancelled"):
                return status


async def test_a_debates_decision_is_found_by_knowledge_lookup(server: Any) -> None:
    task = "Should the billing service move from cron jobs to a durable queue?"
    async with Client(server) as client:
        started = await call(client, "workflow_start", {"template": "simple_debate", "task": task})
        status = await _until_done(client, started["run_id"])
        assert status["run"]["status"] == "completed"
        with anyio.fail_after(30):
            while True:  # the recorder indexes in the background
                found = await call(client, "knowledge_lookup", {"query": "billing durable queue"})
                hits = [h for h in found["results"] if h["type"] == "decision"]
                if hits:
                    break
                await anyio.sleep(0.1)
    assert "billing" in hits[0]["title"].lower()


@pytest.mark.parametrize(
    ("task", "template"),
    [("login accepts an empty password", "bugfix"), ("add CSV export", "feature_development")],
)
async def test_workflow_start_auto_chooses_by_the_rules_offline(
    server: Any, task: str, template: str
) -> None:
    async with Client(server) as client:
        started = await call(client, "workflow_start", {"template": "auto", "task": task})
    assert started["template"] == template
    assert started["chosen"]["by"] == "rules" and started["chosen"]["fallback"]
    assert started["chosen"]["cost_usd"] == 0


async def test_workflow_start_auto_without_a_task_says_what_is_missing(server: Any) -> None:
    async with Client(server) as client:
        result = await client.call_tool("workflow_start", {"template": "auto", "task": "   "})
    assert result.is_error
    assert "needs a task" in str(result.content)
