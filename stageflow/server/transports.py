"""Serving an ``MCPServer`` over stdio, SSE or Streamable HTTP.

stdio is the default (clients such as Claude Code spawn ``stageflow serve``): only protocol goes
to stdout (the SDK points fd 1 at stderr while serving), logs go to stderr, and the standard
streams are UTF-8 even where the console's code page is not. The HTTP transports run uvicorn on
an app from :func:`http_app`, which applies the rules of :mod:`stageflow.server.security`.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

from stageflow.server.security import BearerTokenMiddleware, require_token, transport_security
from stageflow.server.sessions import (
    DEFAULT_IDLE_S,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PER_CLIENT,
    SessionLimiter,
)

if TYPE_CHECKING:
    import uvicorn
    from mcp.server.lowlevel import Server
    from starlette.types import ASGIApp, Receive, Scope, Send

Transport = Literal["stdio", "sse", "http"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "sse", "http")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
HTTP_PATH = "/mcp"
SSE_PATH = "/sse"

log = logging.getLogger(__name__)


def run_server(
    mcp: MCPServer[Any],
    *,
    transport: Transport = "stdio",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    session_idle_s: float = DEFAULT_IDLE_S,
    sessions_per_client: int = DEFAULT_PER_CLIENT,
    dashboard_token: str | None = None,
) -> None:
    """Serve ``mcp`` until the client goes away (stdio) or the process is interrupted (HTTP).

    For ``sse``/``http`` a non-loopback ``host`` without ``token`` raises ``InvalidArgument``
    before anything is bound; with a token every request must send it as a bearer token.
    ``allowed_hosts`` adds names clients may use in the Host header on a non-loopback bind.
    """
    if transport == "stdio":
        anyio.run(serve_stdio, mcp)
        return
    app = http_app(
        mcp,
        transport,
        host=host,
        token=token,
        allowed_hosts=allowed_hosts,
        session_idle_s=session_idle_s,
        sessions_per_client=sessions_per_client,
        dashboard_token=dashboard_token,
    )
    server = uvicorn_server(app, host=host, port=port)
    log.info("stageflow MCP server (%s) on %s:%s", transport, host, port)
    anyio.run(server.serve)


async def serve_stdio(mcp: MCPServer[Any]) -> None:
    """Serve one client over this process's stdin/stdout until stdin closes.

    Runs the low-level server directly so handshake-era clients see ``listChanged`` for tools,
    resources and prompts (``MCPServer.run_stdio_async`` advertises none).
    """
    low = _lowlevel(mcp)
    options = low.create_initialization_options(
        NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
    )
    async with stdio_server() as (read_stream, write_stream):
        await low.run(read_stream, write_stream, options)


def http_app(
    mcp: MCPServer[Any],
    transport: Literal["sse", "http"],
    *,
    host: str = DEFAULT_HOST,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    session_idle_s: float = DEFAULT_IDLE_S,
    sessions_per_client: int = DEFAULT_PER_CLIENT,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    dashboard_token: str | None = None,
) -> ASGIApp:
    """The ASGI app for ``transport`` as it would be served on ``host``.

    Streamable HTTP answers at ``/mcp``; SSE streams at ``/sse`` and takes posts at
    ``/messages/``. Host/Origin validation is always on; the bearer-token check wraps the whole
    app when a token is in force. Streamable HTTP sessions idle for ``session_idle_s`` end, and
    each client keeps at most ``sessions_per_client`` (``stageflow.server.sessions``). SSE
    enters the server lifespan once for the app (the SDK would enter it per connection,
    starting one scheduler per client).

    With ``dashboard_token``, Streamable HTTP also serves the dashboard at ``/`` (every path
    but ``/mcp``), with its own session rules (``stageflow.dashboard.guard``); the bearer
    token guards ``/mcp`` only, since a browser cannot send it.
    """
    enforced = require_token(host, token)
    security = transport_security(host, allowed_hosts)
    if transport == "http":
        app: ASGIApp = SessionLimiter(
            mcp.streamable_http_app(
                streamable_http_path=HTTP_PATH,
                transport_security=security,
                host=host,
                session_idle_timeout=session_idle_s,
                max_sessions=max_sessions,
            ),
            path=HTTP_PATH,
            per_client=sessions_per_client,
            idle_s=session_idle_s,
        )
    else:
        sse = mcp.sse_app(sse_path=SSE_PATH, transport_security=security, host=host)
        low = _lowlevel(mcp)
        sse.router.lifespan_context = lambda _app: _shared_lifespan(low)
        app = sse
    if enforced is not None:
        app = BearerTokenMiddleware(app, enforced)
    if transport == "http" and dashboard_token:
        from stageflow.server.dashboard import served_dashboard

        board = served_dashboard(mcp, token=dashboard_token, host=host, allowed_hosts=allowed_hosts)
        app = PathDispatch(app, board, prefix=HTTP_PATH)
    return app


class PathDispatch:
    """``prefix`` (and lifespan events) to ``main``; every other HTTP path to ``other``."""

    def __init__(self, main: ASGIApp, other: ASGIApp, *, prefix: str) -> None:
        self.main = main
        self.other = other
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "lifespan" or path == self.prefix or path.startswith(self.prefix + "/"):
            await self.main(scope, receive, send)
        else:
            await self.other(scope, receive, send)


def uvicorn_server(app: ASGIApp, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` that logs through ``logging`` (stderr), without access logs.

    ``port=0`` picks a free port; read it from ``bound_port`` once the server has started.
    """
    import uvicorn  # only the HTTP transports pay for it

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # uvicorn's default config sends access lines to stdout
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started uvicorn server listens on (useful with ``port=0``)."""
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("server is not listening yet")


def prepare_stdio() -> None:
    """Make the standard streams UTF-8 and send log records to stderr.

    Call before building the server: ``MCPServer`` configures logging only when nothing else
    has, and a console code page like cp1252 would otherwise garble or reject non-ASCII text.
    """
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        force_utf8(stream)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def force_utf8(stream: object) -> None:
    """Switch a text stream to UTF-8 when it uses another encoding (e.g. a Windows console)."""
    if not isinstance(stream, io.TextIOWrapper):
        return
    if (stream.encoding or "").lower().replace("-", "") != "utf8":
        stream.reconfigure(encoding="utf-8", errors="replace")


@asynccontextmanager
async def _shared_lifespan(low: Server[Any]) -> AsyncIterator[None]:
    """Enter the server lifespan once; every connection reuses its state while the app runs."""
    original = low.lifespan
    async with original(low) as state:

        @asynccontextmanager
        async def reuse(_server: Server[Any]) -> AsyncIterator[Any]:
            yield state

        low.lifespan = reuse
        try:
            yield
        finally:
            low.lifespan = original


def _lowlevel(mcp: MCPServer[Any]) -> Server[Any]:
    # mcp 2.3 has no public accessor for the low-level server; both uses above need it.
    low: Server[Any] = mcp._lowlevel_server
    return low
