"""A failed attempt the orchestrator hands to a person, over real MCP client sessions in both
protocol eras: the stage waits as a person-only decision; the assistant's ``workflow_approve``
makes the server ask the person (elicitation), whose approval runs the stage again; a client
that cannot ask gets a tool error naming the command, and the run keeps waiting, unchanged.
The orchestrator is a local model behind an Ollama stand-in; the agents are the offline
runner, scripted to fail the first attempt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from stageflow import events as ev
from stageflow.config import load_settings
from stageflow.server.app import build_server
from stageflow.store.store import Store
from tests.server.human import Person
from tests.server.test_tools_run import ok, status_until, text
from tests.standin.ollama import Json, OllamaStandIn

pytestmark = pytest.mark.anyio

TEMPLATE = """\
name: fragile
description: a stage that fails once
stages:
  - id: build
    agent: developer
    produces: [patch_summary]
    on_failure: {retry: {max_attempts: 2, backoff: 0s}}
"""


def _human(body: Json) -> str:
    return json.dumps({"verdict": "human", "reason": "the failure is in the patch itself"})


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "project"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "fragile.yaml").write_text(TEMPLATE, encoding="utf-8")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"build": {"fail_times": 1}}), encoding="utf-8")
    monkeypatch.setenv("STAGEFLOW_OFFLINE_SCRIPT", str(script))
    with OllamaStandIn(_human) as ollama:
        (root / ".stageflow" / "config.toml").write_text(
            f'[orchestrator]\nprovider = "ollama"\nmodel = "qwen3:4b"\n'
            f'ollama_host = "{ollama.host}"\n',
            encoding="utf-8",
        )
        yield root


async def _start(client: Client) -> tuple[str, dict[str, object]]:
    started = ok(await client.call_tool("workflow_start", {"template": "fragile", "task": "x"}))
    run_id = str(started["run_id"])
    run = await status_until(client, run_id, lambda r: bool(r["waiting"]))
    return run_id, run


async def _log(project: Path, run_id: str) -> list[ev.Event]:
    async with await Store.open(project / ".stageflow" / "state.db") as store:
        return [e.event for e in await store.load_events(run_id)]


async def test_the_person_asked_approves_a_retry(project: Path, mode: str) -> None:
    person = Person("ann")
    server = build_server(load_settings(project))
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        run_id, run = await _start(client)
        [wait] = run["waiting"]  # type: ignore[misc]
        assert wait["stage"] == "build" and wait["human_only"] is True
        result = ok(
            await client.call_tool(
                "workflow_approve", {"run_id": run_id, "decision": "reject", "approver": "model"}
            )
        )
        assert (result["action"], result["actor"]) == ("approve", "ann")  # the person's answer
        [question] = person.asked
        assert "build" in question
        done = await status_until(client, run_id, lambda r: r["status"] == "completed")
        build = next(s for s in done["stages"] if s["id"] == "build")
        assert build["attempts"] == 2
    events = await _log(project, run_id)
    (triage,) = [e for e in events if isinstance(e, ev.OrchestrationDecided)]
    assert (triage.answer, triage.decided_by, triage.model) == ("human", "model", "qwen3:4b")
    decided = [e for e in events if isinstance(e, ev.EscalationDecided)]
    assert [(d.decision, d.approver, d.by_agent) for d in decided] == [("approve", "ann", False)]


async def test_a_client_that_cannot_ask_the_person_is_refused_and_nothing_changes(
    project: Path, mode: str
) -> None:
    server = build_server(load_settings(project))
    async with Client(server, mode=mode) as client:  # no elicitation callback
        run_id, _ = await _start(client)
        before = await _log(project, run_id)
        refused = await client.call_tool(
            "workflow_approve", {"run_id": run_id, "decision": "approve", "approver": "model"}
        )
        assert refused.is_error
        assert f"stageflow approve {run_id} --stage build" in text(refused)
        run = ok(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]
        assert [w["stage"] for w in run["waiting"]] == ["build"]
    assert await _log(project, run_id) == before
