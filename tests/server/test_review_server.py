"""Review findings against the MCP server's contract (issue 3): each test failed before its fix.

Status results stay small whatever the task or a summary look like; artifact pages stay under
~10k tokens for CJK text too; out-of-range integers and unknown prompt names are clean errors;
a loopback bind other than 127.0.0.1 serves its own Host; the Bearer scheme is case-insensitive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from stageflow.config import load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.server.app import build_server
from stageflow.server.security import BearerTokenMiddleware, is_loopback, transport_security

MODES = ["auto", "legacy"]
SMALL_RESULT = 20_000  # bytes: a status result the model reads on every poll

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
    data: dict[str, Any] | None = result.structured_content
    assert data is not None
    return data


def result_size(result: CallToolResult) -> int:
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    workflows = root / ".stageflow" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "one_stage.yaml").write_text(ONE_STAGE, encoding="utf-8")
    return root


class HangingRunner:
    """Every attempt runs until cancelled, so the run stays ``running``."""

    name = "hanging"

    async def run(self, request: AttemptRequest) -> AttemptResult:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class DocRunner:
    """Passes at once with the given artifacts and summary."""

    name = "doc"

    def __init__(self, artifacts: dict[str, str], summary: str = "wrote") -> None:
        self.artifacts = artifacts
        self.summary = summary

    async def run(self, request: AttemptRequest) -> AttemptResult:
        return AttemptResult(
            status="passed",
            summary=self.summary,
            artifacts=self.artifacts,
            runner="doc",
            model="none",
        )


async def start_and_finish(client: Client) -> str:
    run_id: str = ok(
        await client.call_tool("workflow_start", {"template": "one_stage", "task": "t"})
    )["run_id"]
    with anyio.fail_after(20):
        while True:
            data = ok(
                await client.call_tool("workflow_status", {"run_id": run_id, "wait_seconds": 5})
            )
            if data["run"]["status"] in ("completed", "failed"):
                return run_id


# -- results stay small ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_status_stays_small_when_the_task_is_long(project: Path, mode: str) -> None:
    task = "Implement the spec below.\n" + ("lorem ipsum dolor sit amet " * 4_000)  # ~108 kB
    server = build_server(load_settings(project), runner=HangingRunner())
    async with Client(server, mode=mode) as client:
        run_id = ok(
            await client.call_tool("workflow_start", {"template": "one_stage", "task": task})
        )["run_id"]
        one = await client.call_tool("workflow_status", {"run_id": run_id})
        listing = await client.call_tool("workflow_status", {})
    assert not one.is_error and not listing.is_error
    assert result_size(one) < SMALL_RESULT, result_size(one)
    assert result_size(listing) < SMALL_RESULT, result_size(listing)


@pytest.mark.anyio
async def test_status_stays_small_when_a_stage_summary_is_long(project: Path, mode: str) -> None:
    summary = "Here is what I did:\n" + "- changed a file\n" * 5_000  # a chatty final message
    server = build_server(load_settings(project), runner=DocRunner({"doc": "x\n"}, summary))
    async with Client(server, mode=mode) as client:
        run_id = await start_and_finish(client)
        status = await client.call_tool("workflow_status", {"run_id": run_id})
    assert not status.is_error
    assert result_size(status) < SMALL_RESULT, result_size(status)


@pytest.mark.anyio
async def test_artifact_page_of_cjk_text_stays_under_10k_tokens(project: Path, mode: str) -> None:
    doc = "".join(f"第{i}行设计文档的内容在这里继续写下去。\n" for i in range(3_000))
    server = build_server(load_settings(project), runner=DocRunner({"doc": doc}))
    async with Client(server, mode=mode) as client:
        run_id = await start_and_finish(client)
        page = ok(
            await client.call_tool(
                "workflow_artifact", {"run_id": run_id, "stage": "write", "name": "doc"}
            )
        )
    # each of these characters is at least one token, and the page travels twice
    assert 2 * len(page["text"]) <= 10_000, len(page["text"])


# -- bad input gets a readable error ---------------------------------------------------------


@pytest.mark.anyio
async def test_artifact_with_a_huge_version_number_is_a_validation_error(
    project: Path, mode: str
) -> None:
    server = build_server(load_settings(project), runner=DocRunner({"doc": "x\n"}))
    async with Client(server, mode=mode) as client:
        run_id = await start_and_finish(client)
        try:
            res = await client.call_tool(
                "workflow_artifact",
                {"run_id": run_id, "stage": "write", "name": "doc", "version": 2**70},
            )
            assert res.is_error
            message = text(res)
        except MCPError as exc:
            message = exc.error.message
        still = ok(await client.call_tool("workflow_status", {"run_id": run_id}))
    assert still["run"]["status"] == "completed"  # the server keeps serving either way
    assert "version" in message, message


@pytest.mark.anyio
async def test_unknown_prompt_is_invalid_params_listing_the_templates(
    project: Path, mode: str
) -> None:
    server = build_server(load_settings(project))
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("nope", {"task": "t"})
    assert caught.value.error.code == INVALID_PARAMS, caught.value.error
    assert "one_stage" in caught.value.error.message


# -- HTTP security -----------------------------------------------------------------------------


def _request(host: str) -> Request:
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/mcp",
        "headers": [(b"host", host.encode())],
        "query_string": b"",
    }
    return Request(scope)


@pytest.mark.anyio
async def test_a_loopback_bind_other_than_127_0_0_1_accepts_its_own_host_header() -> None:
    assert is_loopback("127.0.0.2")  # so no token is needed and the bind is allowed
    guard = TransportSecurityMiddleware(transport_security("127.0.0.2"))
    assert await guard.validate_request(_request("127.0.0.2:8765")) is None


@pytest.mark.anyio
async def test_bearer_scheme_is_case_insensitive() -> None:
    reached: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    guard = BearerTokenMiddleware(app, "s3cret")
    scope: Scope = {"type": "http", "headers": [(b"authorization", b"bearer s3cret")]}
    await guard(scope, receive, send)
    assert reached and sent[0]["status"] == 200
