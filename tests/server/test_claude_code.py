"""The real Claude Code CLI as the MCP client: ``claude -p`` launches ``stageflow serve`` from an
``--mcp-config`` file, a loopback stand-in of the Messages API (``fake_messages_api.py``) makes
it call ``workflow_start`` and then ``workflow_status``, and the run lands in ``state.db``.

Claude Code comes from the npm registry into ``.ci/node`` (gitignored): the fixture installs the
version pinned in ``tests/claude_cli.py`` on first use, so the test runs wherever the README's
test command runs. A missing ``npm`` or a failed install fails the test; it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from stageflow.store.store import Store
from tests import claude_cli
from tests.server.fake_messages_api import (
    FINAL_TEXT,
    START_TOOL,
    STATUS_TOOL,
    FakeMessagesAPI,
)

TASK = "Fix the crash when the config file is empty"
MODEL = "claude-sonnet-4-5"  # any id: the stand-in answers for every model
TIMEOUT_S = 120


@pytest.fixture(scope="session")
def claude() -> Path:
    """The pinned Claude Code binary (``tests/claude_cli.py``), installed on first use."""
    binary, why = claude_cli.ensure()
    if binary is None:
        pytest.fail(f"Claude Code is needed for this test: {why}")
    return binary


def mcp_config(path: Path, project: Path) -> Path:
    """The ``--mcp-config`` file: ``stageflow serve`` over stdio, offline runner."""
    server = {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "stageflow", "serve", "--project", str(project)],
        "env": {"STAGEFLOW_RUNNER": "offline", "STAGEFLOW_HOME": os.environ["STAGEFLOW_HOME"]},
    }
    path.write_text(json.dumps({"mcpServers": {"stageflow": server}}), encoding="utf-8")
    return path


def claude_env(base_url: str, home: Path) -> dict[str, str]:
    """A clean environment: nothing of the developer's Claude or Anthropic setup leaks in."""
    return claude_cli.clean_env(base_url, home)


@pytest.mark.anyio
@pytest.mark.slow
async def test_claude_code_starts_a_bugfix_run_through_stageflow_serve(
    tmp_path: Path, claude: Path
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    config = mcp_config(tmp_path / "mcp.json", project)
    command = [
        str(claude),
        "-p",
        "Start a bugfix run",
        "--output-format",
        "json",
        "--mcp-config",
        str(config),
        "--strict-mcp-config",
        "--allowedTools",
        f"{START_TOOL},{STATUS_TOOL}",
        "--model",
        MODEL,
        "--no-session-persistence",
    ]
    with FakeMessagesAPI(task=TASK) as api:
        with anyio.fail_after(TIMEOUT_S):  # cancelling kills the CLI
            done = await anyio.run_process(
                command,
                stdin=subprocess.DEVNULL,  # -p would otherwise wait for piped input
                cwd=project,
                env=claude_env(api.base_url, home),
                check=False,
            )
    seen = api.seen
    trace = _trace(done, seen.requests, seen.unknown)
    assert done.returncode == 0, trace
    answer = json.loads(done.stdout)
    assert (answer["is_error"], answer["result"]) == (False, FINAL_TEXT), trace

    # Claude Code deferred the MCP tools; the model loaded both through ToolSearch, then asked
    # for both tools, in order, and got both results back.
    assert seen.tool_searches == [f"select:{START_TOOL},{STATUS_TOOL}"], trace
    assert len(seen.run_ids) >= 1, trace
    run_id = seen.run_ids[0]
    assert seen.tool_calls == [
        (START_TOOL, {"template": "bugfix", "task": TASK}),
        (STATUS_TOOL, {"run_id": run_id}),
    ], trace
    assert run_id in seen.tool_results[STATUS_TOOL] and '"bugfix"' in seen.tool_results[STATUS_TOOL]
    messages = [r for r in seen.requests if r["path"] == "/v1/messages"]
    assert {r["headers"].get("x-api-key") for r in messages} == {"test-key"}, trace

    # The run is durable in the project's database, created by the server Claude Code spawned.
    async with await Store.open(project / ".stageflow" / "state.db") as store:
        runs = await store.list_runs()
    assert [(r.run_id, r.template, r.task) for r in runs] == [(run_id, "bugfix", TASK)]


def _trace(
    done: subprocess.CompletedProcess[bytes], requests: list[Any], unknown: list[str]
) -> str:
    """What to show when the test fails: the CLI's output and the traffic the stand-in saw."""
    paths = [f"{r['method']} {r['path']}" for r in requests]
    return (
        f"exit {done.returncode}\nstdout: {done.stdout.decode(errors='replace')[-4000:]}\n"
        f"stderr: {done.stderr.decode(errors='replace')[-4000:]}\n"
        f"requests: {paths}\nunhandled: {unknown}"
    )


def test_the_stand_in_scripts_the_same_turn_streamed_and_not() -> None:
    """The fake's two wire forms (Claude Code streams, but falls back to plain JSON)."""
    tools = [{"name": n, "input_schema": {"type": "object"}} for n in (START_TOOL, STATUS_TOOL)]
    ask = {"model": MODEL, "max_tokens": 64, "tools": tools}
    user = [{"role": "user", "content": "Start a bugfix run"}]
    with (
        FakeMessagesAPI(task=TASK) as api,
        httpx2.Client(base_url=api.base_url, timeout=10) as http,
    ):
        plain = http.post("/v1/messages", json={**ask, "messages": user}).json()
        sse = http.post("/v1/messages", json={**ask, "messages": user, "stream": True})
        title = http.post("/v1/messages", json={"model": MODEL, "messages": user}).json()
    events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
    assert sse.headers["content-type"] == "text/event-stream"
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = {**events[1]["content_block"], "input": json.loads(events[2]["delta"]["partial_json"])}
    assert plain["content"] == [{**block, "id": plain["content"][0]["id"]}]
    assert block["name"] == START_TOOL and block["input"] == {"template": "bugfix", "task": TASK}
    assert plain["stop_reason"] == events[4]["delta"]["stop_reason"] == "tool_use"
    assert (title["stop_reason"], title["content"][0]["type"]) == ("end_turn", "text")


SLASH_TASK = "add a --verbose flag"


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_slash_command_starts_a_run_whose_task_is_the_whole_typed_text(
    tmp_path: Path, claude: Path
) -> None:
    """``/mcp__stageflow__feature_development add a --verbose flag`` in real Claude Code: the
    CLI passes only ``add`` as the prompt's ``task`` argument but sends the typed text to the
    model in ``<command-args>``; the prompt tells the model to take that text whole, and the
    run's task is exactly what the user typed."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    config = mcp_config(tmp_path / "mcp.json", project)
    command = [
        str(claude),
        "-p",
        f"/mcp__stageflow__feature_development {SLASH_TASK}",
        "--output-format",
        "json",
        "--mcp-config",
        str(config),
        "--strict-mcp-config",
        "--allowedTools",
        f"{START_TOOL},{STATUS_TOOL}",
        "--model",
        MODEL,
        "--no-session-persistence",
    ]
    with FakeMessagesAPI(task=TASK) as api:
        with anyio.fail_after(TIMEOUT_S):
            done = await anyio.run_process(
                command,
                stdin=subprocess.DEVNULL,
                cwd=project,
                env=claude_env(api.base_url, home),
                check=False,
            )
    seen = api.seen
    trace = _trace(done, seen.requests, seen.unknown)
    assert done.returncode == 0, trace
    # what Claude Code sent the model: the prompt, with only the first word as its argument,
    # after the whole typed text
    assert len(seen.prompt_texts) == 1, (seen.tool_searches, seen.tool_calls, trace)
    (conversation,) = seen.prompt_texts
    assert f"<command-args>{SLASH_TASK}</command-args>" in conversation, conversation
    assert "<task>\nadd\n</task>" in conversation, conversation
    assert "the task is that block's whole text" in conversation
    assert seen.tool_calls[0] == (
        START_TOOL,
        {"template": "feature_development", "task": SLASH_TASK},
    ), trace
    async with await Store.open(project / ".stageflow" / "state.db") as store:
        runs = await store.list_runs()
    assert [(r.template, r.task) for r in runs] == [("feature_development", SLASH_TASK)]
