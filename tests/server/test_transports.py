"""The HTTP transports on loopback: Streamable HTTP and SSE serve both protocol eras, Host and
Origin are validated, and a non-loopback bind needs (and enforces) a bearer token.

Every server here listens on 127.0.0.1 on a port uvicorn picks; the non-loopback rules are
exercised by building the app exactly as for such a bind and serving it on loopback.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp

from stageflow.errors import InvalidArgument
from stageflow.server.security import is_loopback, require_token, transport_security
from stageflow.server.transports import (
    bound_port,
    force_utf8,
    http_app,
    run_server,
    uvicorn_server,
)
from tests.engine.harness import wait_until

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
POST_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
# A TEST-NET-1 address (RFC 5737): non-loopback and never assigned to this machine, so a
# refusal that failed to happen could not open a port anywhere.
UNROUTABLE = "192.0.2.1"


class Lifespans:
    def __init__(self) -> None:
        self.entered = 0


def tiny_server() -> tuple[MCPServer, Lifespans]:
    """One tool and a lifespan that counts how often it is entered."""
    counter = Lifespans()

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[Lifespans]:
        counter.entered += 1
        yield counter

    mcp = MCPServer("tiny", lifespan=lifespan, log_level="WARNING")

    @mcp.tool()
    async def add(a: int, b: int, ctx: Context[Lifespans]) -> int:
        """Add two numbers."""
        assert ctx.request_context.lifespan_context is counter
        return a + b

    return mcp, counter


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 (free port) for the block; always shut down afterwards."""
    server = uvicorn_server(app, host="127.0.0.1", port=0)
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        try:

            async def started() -> bool:
                return bool(server.started)

            await wait_until(started, limit=10)
            yield bound_port(server)
        finally:
            server.should_exit = True
            with anyio.fail_after(10):
                await stopped.wait()


async def post_init(url: str, **headers: str) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(url, json=INIT, headers={**POST_HEADERS, **headers})


# -- Streamable HTTP -----------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_streamable_http_on_loopback_serves_both_eras_with_one_lifespan(
    mode: Any, version: str
) -> None:
    mcp, lifespans = tiny_server()
    async with serving(http_app(mcp, "http")) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(20):
            for _ in range(2):
                async with Client(url, mode=mode) as client:
                    assert client.protocol_version == version
                    result = await client.call_tool("add", {"a": 20, "b": 22})
                    assert result.structured_content == {"result": 42}
    assert lifespans.entered == 1


async def test_streamable_http_rejects_foreign_host_with_421_and_foreign_origin_with_403() -> None:
    mcp, _ = tiny_server()
    async with serving(http_app(mcp, "http")) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(20):
            ok = await post_init(url, origin=f"http://localhost:{port}")
            bad_host = await post_init(url, host="evil.example")
            bad_origin = await post_init(url, origin="http://evil.example")
    assert ok.status_code == 200
    assert (bad_host.status_code, bad_host.text) == (421, "Invalid Host header")
    assert (bad_origin.status_code, bad_origin.text) == (403, "Invalid Origin header")


# -- SSE ---------------------------------------------------------------------------------


async def test_sse_on_loopback_serves_clients_and_enters_the_lifespan_once_for_all() -> None:
    mcp, lifespans = tiny_server()
    async with serving(http_app(mcp, "sse")) as port:
        url = f"http://127.0.0.1:{port}/sse"
        with anyio.fail_after(20):
            for a in (1, 2):
                async with Client(sse_client(url), mode="legacy") as client:
                    assert client.protocol_version == "2025-11-25"
                    result = await client.call_tool("add", {"a": a, "b": 40})
                    assert result.structured_content == {"result": a + 40}
    assert lifespans.entered == 1


async def test_sse_rejects_foreign_host_and_origin() -> None:
    mcp, _ = tiny_server()
    async with serving(http_app(mcp, "sse")) as port:
        url = f"http://127.0.0.1:{port}/sse"
        with anyio.fail_after(20):
            async with httpx2.AsyncClient(timeout=10) as http:
                bad_host = await http.get(url, headers={"host": "evil.example"})
                bad_origin = await http.get(url, headers={"origin": "http://evil.example"})
    assert bad_host.status_code == 421
    assert bad_origin.status_code == 403


# -- bearer token on a non-loopback bind --------------------------------------------------


def test_non_loopback_bind_without_token_refuses_before_binding() -> None:
    mcp, lifespans = tiny_server()
    for transport in ("http", "sse"):
        with pytest.raises(InvalidArgument, match="STAGEFLOW_TOKEN"):
            run_server(mcp, transport=transport, host=UNROUTABLE, port=0, token=None)
        with pytest.raises(InvalidArgument, match="non-loopback"):
            run_server(mcp, transport=transport, host="0.0.0.0", port=0, token="  ")
    assert lifespans.entered == 0


def test_loopback_needs_no_token_but_enforces_one_given() -> None:
    assert require_token("127.0.0.1", None) is None
    assert require_token("localhost", "") is None
    assert require_token("::1", " s3cret ") == "s3cret"
    assert require_token("0.0.0.0", "s3cret") == "s3cret"


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_non_loopback_app_answers_401_without_the_right_token(transport: Any) -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, transport, host="0.0.0.0", token="s3cret")
    path = "/mcp" if transport == "http" else "/sse"
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}{path}"
        with anyio.fail_after(20):
            missing = await post_init(url)
            wrong = await post_init(url, authorization="Bearer nope")
            basic = await post_init(url, authorization="Basic s3cret")
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_non_loopback_streamable_http_with_token_serves_allowed_hosts_only() -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, "http", host="0.0.0.0", token="s3cret", allowed_hosts=["stageflow.test"])
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        auth = {"authorization": "Bearer s3cret"}
        with anyio.fail_after(20):
            foreign = await post_init(url, host="evil.example", **auth)
            named = await post_init(url, host=f"stageflow.test:{port}", **auth)
            http = httpx2.AsyncClient(headers={**auth, "host": f"stageflow.test:{port}"})
            try:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    result = await client.call_tool("add", {"a": 1, "b": 2})
            finally:
                await http.aclose()
    assert foreign.status_code == 421
    assert named.status_code == 200
    assert result.structured_content == {"result": 3}


async def test_non_loopback_sse_with_token_serves_a_client_sending_it() -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, "sse", host="0.0.0.0", token="s3cret", allowed_hosts=["stageflow.test"])
    async with serving(app) as port:
        headers = {"authorization": "Bearer s3cret", "host": f"stageflow.test:{port}"}
        transport = sse_client(f"http://127.0.0.1:{port}/sse", headers=headers)
        with anyio.fail_after(20):
            async with Client(transport, mode="legacy") as client:
                result = await client.call_tool("add", {"a": 5, "b": 6})
    assert result.structured_content == {"result": 11}


# -- the security rules as plain functions ------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback_accepts_only_local_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_transport_security_allows_loopback_names_bind_address_and_extras() -> None:
    local = transport_security("127.0.0.1")
    assert local.enable_dns_rebinding_protection
    assert {"127.0.0.1:*", "localhost:*", "[::1]:*"} <= set(local.allowed_hosts)
    assert "evil.example" not in local.allowed_hosts

    lan = transport_security("192.168.1.5", ["box.lan"])
    assert {"192.168.1.5", "192.168.1.5:*", "box.lan:*"} <= set(lan.allowed_hosts)
    assert "http://box.lan:*" in lan.allowed_origins
    assert "https://192.168.1.5:*" in lan.allowed_origins

    v6 = transport_security("fd00::5")
    assert "[fd00::5]:*" in v6.allowed_hosts
    wildcard = transport_security("0.0.0.0")
    assert "0.0.0.0" not in wildcard.allowed_hosts


def test_force_utf8_reconfigures_a_cp1252_console_stream() -> None:
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="cp1252")
    force_utf8(console)
    console.write("ünïcode ✓")
    console.flush()
    assert console.encoding == "utf-8"
    assert raw.getvalue().decode("utf-8") == "ünïcode ✓"


# -- the `stageflow serve` command ---------------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_serve_command_refuses_non_loopback_without_token_with_exit_2(
    transport: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from stageflow.cli.main import main

    monkeypatch.delenv("STAGEFLOW_TOKEN", raising=False)
    argv = ["serve", "--transport", transport, "--host", UNROUTABLE, "--project", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "STAGEFLOW_TOKEN" in err
    assert UNROUTABLE in err
    assert not (tmp_path / ".stageflow").exists()  # refused before the project was opened
