"""Server logs to the client as MCP log messages (``notifications/message``).

stdio's stdout is the protocol, so logs go to stderr; clients also get WARNING and above as
MCP log messages, which Claude Code and other hosts show in their MCP log view. A middleware
remembers each handshake-era client session (the 2026-07-28 era deprecated the logging
capability and makes it a per-request opt-in, so those clients read stderr or the tools'
results instead); a logging handler queues records, and a lifespan task forwards them.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from typing import Any

import anyio
from anyio.abc import TaskStatus
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning

from stageflow.server.notify import client_key

STATELESS_ERA = "2026-07-28"
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class ClientLogForwarder(logging.Handler):
    """Queues log records and sends them to the remembered client sessions."""

    def __init__(self, level: int = logging.WARNING, *, backlog: int = 200) -> None:
        super().__init__(level)
        self._pending: deque[tuple[str, str, str]] = deque(maxlen=backlog)
        self._sessions: dict[object, ServerSession] = {}

    def emit(self, record: logging.LogRecord) -> None:
        level = _LEVELS.get(record.levelno, "warning")
        try:
            message = self.format(record)
        except Exception:  # a broken log call must never break the server
            message = record.getMessage()
        # deque.append is thread-safe: records may come from worker threads
        self._pending.append((level, message, record.name))

    def remember(self, session: ServerSession) -> None:
        self._sessions[client_key(session)] = session

    @property
    def clients(self) -> int:
        return len(self._sessions)

    async def run(self, stop: anyio.Event, *, task_status: TaskStatus[None]) -> None:
        """Forward queued records until ``stop`` is set."""
        task_status.started()
        while not stop.is_set():
            with anyio.move_on_after(0.25):
                await stop.wait()
            await self.forward()

    async def forward(self) -> None:
        """Send every queued record to every remembered client."""
        while self._pending:
            level, message, logger = self._pending.popleft()
            for key, session in list(self._sessions.items()):
                try:
                    with anyio.fail_after(2), warnings.catch_warnings():
                        # deprecated only for 2026-07-28 clients, which are never remembered
                        warnings.simplefilter("ignore", MCPDeprecationWarning)
                        await session.send_log_message(level, message, logger)  # type: ignore[arg-type]
                except Exception:  # the client went away: forget it, keep serving the others
                    self._sessions.pop(key, None)


class RememberClients:
    """Middleware: note every handshake-era client session for log forwarding."""

    def __init__(self, forwarder: ClientLogForwarder) -> None:
        self.forwarder = forwarder

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.request_id is not None and ctx.protocol_version != STATELESS_ERA:
            self.forwarder.remember(ctx.session)
        return result
