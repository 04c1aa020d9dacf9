"""Abandoned Streamable HTTP sessions never lock other clients out (issue 11 point 9).

A client that opens sessions and walks away used to fill the SDK's table (10,000 sessions,
about 460 MB) so that every new client got 503 for 30 minutes. Each client now keeps at most
``sessions_per_client`` sessions (one more ends its least recently used), and idle sessions end
after ``session_idle_s``. Real uvicorn on loopback, raw HTTP for the abandoned sessions and the
SDK's client for the newcomer.
"""

from __future__ import annotations

import logging

import anyio
import httpx2
import pytest
from mcp import Client

from stageflow.server.sessions import SessionLimiter
from stageflow.server.transports import http_app
from tests.cli.harness import Cli
from tests.server.test_transports import INIT, POST_HEADERS, serving, tiny_server

pytestmark = pytest.mark.anyio

LEGACY = "2025-11-25"  # the era in which initialize opens a session


async def _abandon(url: str, count: int) -> list[str]:
    """Open ``count`` sessions and never use or delete them; their ids, oldest first."""
    ids = []
    async with httpx2.AsyncClient(timeout=10) as http:
        for _ in range(count):
            reply = await http.post(url, json=INIT, headers=POST_HEADERS)
            assert reply.status_code == 200, reply.text
            ids.append(reply.headers["mcp-session-id"])
    return ids


async def _alive(url: str, sid: str) -> bool:
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {**POST_HEADERS, "mcp-session-id": sid, "mcp-protocol-version": LEGACY}
    async with httpx2.AsyncClient(timeout=10) as http:
        reply = await http.post(url, json=ping, headers=headers)
    assert reply.status_code in (200, 404), reply.text
    return reply.status_code == 200


async def test_without_the_bound_abandoned_sessions_lock_a_new_client_out() -> None:
    # the attack as it was: the SDK's own bound alone, filled by one client
    mcp, _ = tiny_server()
    app = http_app(mcp, "http", sessions_per_client=10_000, max_sessions=20)
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        await _abandon(url, 20)
        async with httpx2.AsyncClient(timeout=10) as http:
            refused = await http.post(url, json=INIT, headers=POST_HEADERS)
    assert refused.status_code == 503


async def test_abandoned_sessions_never_lock_out_a_new_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, "http", sessions_per_client=8, max_sessions=20)
    assert isinstance(app, SessionLimiter)
    caplog.set_level(logging.WARNING, logger="stageflow.server.sessions")
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(60):
            ids = await _abandon(url, 100)  # five times the SDK's bound: all opened
            assert app.sessions() == 8
            # the oldest were ended, the newest still answer
            assert not await _alive(url, ids[0])
            assert await _alive(url, ids[-1])
            for mode in ("legacy", "auto"):
                async with Client(url, mode=mode) as client:
                    result = await client.call_tool("add", {"a": 20, "b": 22})
                    assert result.structured_content == {"result": 42}
            assert app.sessions() <= 8
    assert app.evicted >= 92
    said = [r.getMessage() for r in caplog.records if "least recently used" in r.getMessage()]
    assert len(said) == app.evicted and "addr:127.0.0.1" in said[0]


async def test_a_session_in_use_outlives_abandoned_ones() -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, "http", sessions_per_client=4)
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(60):
            [kept] = await _abandon(url, 1)
            for _ in range(5):
                await _abandon(url, 2)
                assert await _alive(url, kept)  # used: it moves to the back of the line


async def test_idle_sessions_end_after_the_idle_time() -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, "http", session_idle_s=0.5)
    assert isinstance(app, SessionLimiter)
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(30):
            [sid] = await _abandon(url, 1)
            assert app.sessions() == 1
            await anyio.sleep(2.0)
            assert not await _alive(url, sid)
            assert app.sessions() == 0


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--session-idle", "0", "--session-idle must be a positive number of seconds"),
        ("--session-idle", "inf", "--session-idle must be a positive number of seconds"),
        ("--sessions-per-client", "0", "--sessions-per-client must be >= 1"),
    ],
)
def test_bad_session_bounds_are_a_usage_error(cli: Cli, flag: str, value: str, said: str) -> None:
    result = cli("serve", "--transport", "http", "--port", "0", flag, value)
    assert result.code == 2 and said in result.err


# found by review: the key was the raw Authorization header, which a client can vary at will
async def _open(url: str, count: int, token: str | None) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        for i in range(count):
            # loopback: no token in force, yet any header is taken as the client's identity;
            # with a token: "Bearer" + i spaces + token is the same accepted token, another key
            auth = f"Bearer x{i}" if token is None else "Bearer" + " " * (i + 1) + token
            reply = await http.post(url, json=INIT, headers={**POST_HEADERS, "authorization": auth})
            assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("token", [None, "s3cret-token-xyz"])
async def test_a_client_varying_its_authorization_header_gets_no_more_sessions(
    token: str | None,
) -> None:
    mcp, _ = tiny_server()
    app = http_app(mcp, "http", token=token, sessions_per_client=8, max_sessions=20)
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(60):
            await _open(url, 20, token)
            hdr = dict(POST_HEADERS)
            if token:
                hdr["authorization"] = f"Bearer {token}"
            async with httpx2.AsyncClient(timeout=10) as http:
                newcomer = await http.post(url, json=INIT, headers=hdr)
    assert newcomer.status_code == 200, newcomer.status_code
    assert isinstance(app, SessionLimiter) or token is not None
