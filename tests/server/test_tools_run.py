"""A whole run driven through the MCP tools in both protocol eras: start, wait on status,
approve one gate, reject another with feedback (rework), complete, read artifacts in pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ResourceLink, TextContent

from stageflow import events as ev
from stageflow.config import load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.service import Service
from stageflow.server.app import build_server
from stageflow.store.store import Store
from stageflow.tools.artifacts import PAGE_CHARS

TWO_GATES = """\
name: two_gates
description: Design, then build; a human approves each
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: required
  - id: build
    agent: developer
    depends_on: [design]
    needs: [design.design]
    produces: [patch_summary]
    approval: required
"""

ONE_STAGE = """\
name: one_stage
description: One stage, no gate
stages:
  - id: write
    agent: documenter
    produces: [doc]
"""


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    workflows = root / ".stageflow" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "two_gates.yaml").write_text(TWO_GATES, encoding="utf-8")
    (workflows / "one_stage.yaml").write_text(ONE_STAGE, encoding="utf-8")
    return root


async def status_until(
    client: Client, run_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll ``workflow_status`` with ``wait_seconds`` until ``done(run)``; bounded."""
    args: dict[str, Any] = {"run_id": run_id}  # look first, then wait for changes
    with anyio.fail_after(20):
        while True:
            data = ok(await client.call_tool("workflow_status", args))
            run: dict[str, Any] = data["run"]
            if done(run):
                return run
            if "wait_seconds" in args:
                assert data["changed"], "a wait on an unsettled run returned without a change"
            args["wait_seconds"] = 10


def waiting_on(stage: str, reworks: int = 0) -> Callable[[dict[str, Any]], bool]:
    def check(run: dict[str, Any]) -> bool:
        st = next(s for s in run["stages"] if s["id"] == stage)
        return [w["stage"] for w in run["waiting"]] == [stage] and st["reworks"] == reworks

    return check


@pytest.mark.anyio
async def test_full_run_through_two_gates_with_a_rework(project: Path, mode: str) -> None:
    settings = load_settings(project)
    async with Client(build_server(settings), mode=mode) as client:
        run_id = ok(
            await client.call_tool(
                "workflow_start", {"template": "two_gates", "task": "add a login page"}
            )
        )["run_id"]

        run = await status_until(client, run_id, waiting_on("design"))
        assert run["status"] == "waiting"
        assert run["waiting"][0]["show"] == ["design/design"]
        design = next(s for s in run["stages"] if s["id"] == "design")
        assert design["artifacts"] == ["design"]
        assert "ask the human whether to approve stage design" in run["next_action"]
        full = ok(await client.call_tool("workflow_status", {"run_id": run_id, "detail": "full"}))
        full_design = next(s for s in full["full"]["stages"] if s["id"] == "design")
        assert full_design["artifacts"][0]["preview"] and full_design["artifacts"][0]["size"] > 0
        assert full_design["history"][0]["outcome"] == "passed"

        approved = ok(
            await client.call_tool(
                "workflow_approve", {"run_id": run_id, "decision": "approve", "approver": "alice"}
            )
        )
        assert (approved["stage"], approved["action"], approved["actor"]) == (
            "design",
            "approve",
            "alice",
        )

        await status_until(client, run_id, waiting_on("build"))
        rejected = ok(
            await client.call_tool(
                "workflow_approve",
                {
                    "run_id": run_id,
                    "stage": "build",
                    "decision": "reject",
                    "feedback": "cover the error paths",
                    "approver": "bob",
                },
            )
        )
        assert rejected["action"] == "reject" and rejected["stage"] == "build"

        run = await status_until(client, run_id, waiting_on("build", reworks=1))
        build = next(s for s in run["stages"] if s["id"] == "build")
        assert (build["artifacts"], build["reworks"]) == (["patch_summary"], 1)
        full = ok(await client.call_tool("workflow_status", {"run_id": run_id, "detail": "full"}))
        full_build = next(s for s in full["full"]["stages"] if s["id"] == "build")
        assert full_build["artifacts"][0]["version"] == 2

        # alice read attempt 1; the rework is attempt 2: her decision must name what she read
        [gate] = run["waiting"]
        assert gate["attempt"] == 2 and "attempt=2" in run["next_action"]
        vague = await client.call_tool(
            "workflow_approve", {"run_id": run_id, "decision": "approve", "approver": "alice"}
        )
        assert vague.is_error and "put up for approval 2 times" in text(vague)
        stale = await client.call_tool(
            "workflow_approve",
            {"run_id": run_id, "decision": "approve", "approver": "alice", "attempt": 1},
        )
        assert stale.is_error and "attempt 1 was replaced" in text(stale)
        ok(
            await client.call_tool(
                "workflow_approve",
                {"run_id": run_id, "decision": "approve", "approver": "alice", "attempt": 2},
            )
        )
        run = await status_until(client, run_id, lambda r: r["status"] == "completed")
        final = await client.call_tool("workflow_status", {"run_id": run_id})
        links = [b for b in final.content if isinstance(b, ResourceLink)]
        assert sorted(str(link.uri) for link in links) == [
            f"stageflow://runs/{run_id}/artifacts/build/patch_summary",
            f"stageflow://runs/{run_id}/artifacts/design/design",
        ]
        assert "done" in text(final)

        latest = ok(
            await client.call_tool(
                "workflow_artifact", {"run_id": run_id, "stage": "build", "name": "patch_summary"}
            )
        )
        first = ok(
            await client.call_tool(
                "workflow_artifact",
                {"run_id": run_id, "stage": "build", "name": "patch_summary", "version": 1},
            )
        )

    assert latest["version"] == 2 and first["version"] == 1
    assert latest["next_offset"] is None
    assert "cover the error paths" in latest["text"]
    assert "cover the error paths" not in first["text"]

    async with await Store.open(settings.db_path) as store:
        report = await Service(settings, store).audit(run_id)
        stored = await store.get_artifact(run_id, "build", "patch_summary")
    assert report.ok, report.problems
    assert latest["text"] == stored.content and latest["sha256"] == stored.sha256
    decisions = [
        (e.actor, e.event.stage, e.event.decision, e.event.feedback)
        for e in report.events
        if isinstance(e.event, ev.ApprovalDecided)
    ]
    assert decisions == [
        ("alice", "design", "approve", None),
        ("bob", "build", "reject", "cover the error paths"),
        ("alice", "build", "approve", None),
    ]


class BigDocRunner:
    """Writes one large artifact of numbered lines."""

    name = "big"

    def __init__(self, lines: int) -> None:
        self.content = "".join(f"line {i:06d} " + "x" * 40 + "\n" for i in range(lines))

    async def run(self, request: AttemptRequest) -> AttemptResult:
        return AttemptResult(
            status="passed",
            summary="wrote the doc",
            artifacts={"doc": self.content},
            runner="big",
            model="none",
        )


@pytest.mark.anyio
async def test_large_artifacts_are_read_in_pages_that_join_to_the_whole(
    project: Path, mode: str
) -> None:
    runner = BigDocRunner(lines=1_000)  # ~52k characters: four pages
    async with Client(build_server(load_settings(project), runner=runner), mode=mode) as client:
        run_id = ok(
            await client.call_tool("workflow_start", {"template": "one_stage", "task": "t"})
        )["run_id"]
        await status_until(client, run_id, lambda r: r["status"] == "completed")
        pages: list[dict[str, Any]] = []
        offset: int | None = 0
        with anyio.fail_after(10):
            while offset is not None:
                page = ok(
                    await client.call_tool(
                        "workflow_artifact",
                        {"run_id": run_id, "stage": "write", "name": "doc", "offset": offset},
                    )
                )
                pages.append(page)
                offset = page["next_offset"]
        past_end = await client.call_tool(
            "workflow_artifact",
            {"run_id": run_id, "stage": "write", "name": "doc", "offset": 10**6},
        )

    assert len(pages) == 4
    assert "".join(p["text"] for p in pages) == runner.content
    assert all(len(p["text"]) <= PAGE_CHARS for p in pages)
    assert all(p["text"].endswith("\n") for p in pages)  # pages end at line breaks
    assert [p["offset"] for p in pages[1:]] == [p["next_offset"] for p in pages[:-1]]
    assert pages[0]["total_chars"] == len(runner.content)
    assert past_end.is_error and "offset must be between 0 and" in text(past_end)


class GatedRunner:
    """The first attempt of each stage runs until ``release`` is set."""

    name = "gated"

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def run(self, request: AttemptRequest) -> AttemptResult:
        self.started.set()
        await self.release.wait()
        return AttemptResult(
            status="passed", summary="ok", artifacts={"doc": "done\n"}, runner="gated"
        )


@pytest.mark.anyio
async def test_status_wait_returns_as_soon_as_the_run_changes(project: Path, mode: str) -> None:
    runner = GatedRunner()
    async with Client(build_server(load_settings(project), runner=runner), mode=mode) as client:
        run_id = ok(
            await client.call_tool("workflow_start", {"template": "one_stage", "task": "t"})
        )["run_id"]
        with anyio.fail_after(5):
            await runner.started.wait()
        await status_until(client, run_id, lambda r: r["stages"][0]["status"] == "running")

        async def release(done: float, total: float | None, message: str | None) -> None:
            runner.release.set()  # the server is waiting now: let the stage finish

        with anyio.fail_after(10):  # far below the 45 s asked for
            result = ok(
                await client.call_tool(
                    "workflow_status",
                    {"run_id": run_id, "wait_seconds": 45},
                    progress_callback=release,
                )
            )
    assert result["changed"] is True
    assert result["waited_s"] < 10


@pytest.mark.anyio
async def test_status_wait_sends_progress_and_times_out_without_a_change(
    project: Path, mode: str
) -> None:
    runner = GatedRunner()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(build_server(load_settings(project), runner=runner), mode=mode) as client:
        run_id = ok(
            await client.call_tool("workflow_start", {"template": "one_stage", "task": "t"})
        )["run_id"]
        with anyio.fail_after(5):
            await runner.started.wait()
        await status_until(client, run_id, lambda r: r["stages"][0]["status"] == "running")
        with anyio.fail_after(10):
            data = ok(
                await client.call_tool(
                    "workflow_status",
                    {"run_id": run_id, "wait_seconds": 1.5},
                    progress_callback=on_progress,
                )
            )
        runner.release.set()
    assert data["changed"] is False
    assert 1.4 <= data["waited_s"] < 5
    assert progress, "no progress notification while waiting"
    assert progress[0][1] == 1.5
    message = progress[-1][2] or ""
    assert message.startswith("write running ") and message.endswith("; 0 of 1 stages done")


@pytest.mark.anyio
async def test_status_wait_returns_at_once_when_the_run_waits_for_a_human(
    project: Path, mode: str
) -> None:
    async with Client(build_server(load_settings(project)), mode=mode) as client:
        run_id = ok(
            await client.call_tool("workflow_start", {"template": "two_gates", "task": "t"})
        )["run_id"]
        await status_until(client, run_id, waiting_on("design"))
        with anyio.fail_after(5):
            data = ok(
                await client.call_tool("workflow_status", {"run_id": run_id, "wait_seconds": 50})
            )
    assert data["changed"] is False and data["waited_s"] == 0
    assert data["run"]["waiting"][0]["stage"] == "design"
