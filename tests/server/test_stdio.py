"""``stageflow serve`` as a real stdio subprocess, launched by the SDK client the way Claude Code
launches it: a full offline run through both gates of ``feature_development`` (the design is
approved, the deployment plan is rejected with feedback, reworked and then approved) to
completion, with the artifacts read back over the protocol."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.server.human import Person

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOOLS = {
    "workflow_templates",
    "workflow_start",
    "workflow_status",
    "workflow_approve",
    "workflow_control",
    "workflow_artifact",
}


def serve_params(project: Path) -> StdioServerParameters:
    env = {
        "STAGEFLOW_RUNNER": "offline",
        "STAGEFLOW_HOME": os.environ["STAGEFLOW_HOME"],  # the per-test home (tests/conftest.py)
        "PYTHONUTF8": "0",
        "PYTHONIOENCODING": "latin-1",  # a non-UTF-8 console: serve must still speak UTF-8
    }
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "stageflow", "serve", "--project", str(project)],
        env=env,
        cwd=str(project),
    )


@asynccontextmanager
async def served(
    project: Path, errlog: TextIO, mode: Any = "legacy", person: Person | None = None
) -> AsyncIterator[Client]:
    """A stdio client of ``stageflow serve``; ``person`` answers the server's questions
    (the built-in templates' gates are decided by a person, asked by elicitation)."""
    person = person or Person()
    async with Client(
        stdio_client(serve_params(project), errlog=errlog), mode=mode, elicitation_callback=person
    ) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"{tool} failed: {text}"
    assert result.structured_content is not None
    assert text  # the short human summary next to the structured content
    return result.structured_content


async def status_until(
    client: Client, run_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll ``workflow_status`` with ``wait_seconds`` until ``done(run)``; bounded."""
    with anyio.fail_after(60):
        while True:
            run = (await call(client, "workflow_status", run_id=run_id, wait_seconds=5))["run"]
            if done(run):
                return run
            assert run["status"] not in ("failed", "cancelled"), run


def waiting_on(stage: str) -> Callable[[dict[str, Any]], bool]:
    return lambda run: any(w["stage"] == stage for w in run["waiting"])


def stage_of(run: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in run["stages"] if s["id"] == stage)


async def test_stdio_serve_runs_a_workflow_through_approval_and_rework_to_completion(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    errlog_path = tmp_path / "serve.stderr"
    with errlog_path.open("w", encoding="utf-8") as errlog:
        try:
            with anyio.fail_after(180):
                person = Person()
                async with served(project, errlog, person=person) as client:
                    await _full_run(client, person)
        except BaseException:
            errlog.flush()
            sys.stderr.write(errlog_path.read_text(encoding="utf-8", errors="replace"))
            raise
    assert (project / ".stageflow" / "state.db").is_file()


async def _full_run(client: Client, person: Person) -> None:
    assert client.protocol_version == "2025-11-25"
    caps = client.server_capabilities
    assert caps.tools is not None and caps.tools.list_changed
    assert caps.prompts is not None and caps.prompts.list_changed
    assert client.instructions and "workflow_start" in client.instructions
    assert {t.name for t in (await client.list_tools()).tools} >= TOOLS

    task = "Add a /health endpoint that reports the version — ünïcode ✓"
    started = await call(client, "workflow_start", template="feature_development", task=task)
    run_id = started["run_id"]

    run = await status_until(client, run_id, waiting_on("architecture"))
    assert stage_of(run, "architecture")["status"] == "awaiting_approval"
    await call(
        client,
        "workflow_approve",
        run_id=run_id,
        stage="architecture",
        decision="approve",
        approver="alice",
    )

    run = await status_until(client, run_id, waiting_on("deployment"))
    assert stage_of(run, "deployment")["reworks"] == 0
    feedback = "Add a rollback drill before the cut-over."
    # the person asked decides: bob rejects (the model's arguments would have approved)
    person.name, person.decision, person.feedback = "bob", "reject", feedback
    await call(
        client,
        "workflow_approve",
        run_id=run_id,
        stage="deployment",
        decision="approve",
        approver="mallory",
    )
    assert "attempt 1" in person.asked[-1] and "deployment" in person.asked[-1]
    person.decision, person.feedback = "approve", ""

    run = await status_until(client, run_id, waiting_on("deployment"))
    deployment = stage_of(run, "deployment")
    assert deployment["reworks"] == 1
    [gate] = run["waiting"]
    await call(
        client,
        "workflow_approve",
        run_id=run_id,
        stage="deployment",
        decision="approve",
        approver="bob",
        attempt=gate["attempt"],
    )

    run = await status_until(client, run_id, lambda r: r["status"] == "completed")
    assert {s["id"]: s["status"] for s in run["stages"]} == {
        "architecture": "succeeded",
        "implementation": "succeeded",
        "testing": "succeeded",
        "review": "succeeded",
        "deployment": "succeeded",
    }
    assert run["task"] == task  # non-ASCII survived both directions

    first = await call(
        client,
        "workflow_artifact",
        run_id=run_id,
        stage="deployment",
        name="deploy_plan",
        version=1,
    )
    latest = await call(
        client, "workflow_artifact", run_id=run_id, stage="deployment", name="deploy_plan"
    )
    assert (first["version"], latest["version"]) == (1, 2)
    assert "rollback drill" in latest["text"]
    assert "rollback drill" not in first["text"]
    design = await call(
        client, "workflow_artifact", run_id=run_id, stage="architecture", name="design"
    )
    assert design["version"] == 1
    assert design["text"]


async def test_stdio_serve_speaks_the_2026_era_too_and_lists_recent_runs(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with (tmp_path / "serve.stderr").open("w", encoding="utf-8") as errlog:
        with anyio.fail_after(60):
            async with served(project, errlog, mode="auto") as client:
                assert client.protocol_version == "2026-07-28"
                assert {t.name for t in (await client.list_tools()).tools} >= TOOLS
                runs = await call(client, "workflow_status")
    assert runs["runs"] == []
