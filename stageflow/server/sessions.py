"""Bounding Streamable HTTP sessions per client, so abandoned ones never lock others out.

The SDK keeps a session until its client deletes it or it has been idle for
``session_idle_timeout``, and refuses new ones (503) past ``max_sessions``. A client that opens
sessions and walks away (10,000 took about 460 MB) used to lock every other client out for the
SDK's default 30 minutes. ``SessionLimiter``, an ASGI middleware in front of the session
manager, gives each client (its network address; never a header it could vary) at most
``per_client`` sessions: opening one more first ends that client's least recently used session,
with the protocol's own ``DELETE``, so the new session always fits and other clients are never
touched. Sessions idle for ``idle_s`` (minutes, not half an hour) are reaped by the SDK and
forgotten here. Every eviction is logged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_IDLE_S", "DEFAULT_MAX_SESSIONS", "DEFAULT_PER_CLIENT", "SessionLimiter"]

log = logging.getLogger(__name__)

DEFAULT_IDLE_S = 300.0  # a session with no request for 5 minutes is ended
DEFAULT_PER_CLIENT = 32  # live sessions per client; one more ends its least recently used
DEFAULT_MAX_SESSIONS = 1024  # all clients together (the SDK's hard bound)

_SESSION = b"mcp-session-id"
_DROPPED = frozenset({b"content-length", b"content-type", b"transfer-encoding", _SESSION})


def client_key(scope: Scope) -> str:
    """Who a request comes from: its network address. Never a header: a client could name
    itself anew with each request (and every holder of the one token shares it)."""
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:?"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class SessionLimiter:
    """See the module docstring. ``path`` is the Streamable HTTP endpoint (``/mcp``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        per_client: int = DEFAULT_PER_CLIENT,
        idle_s: float = DEFAULT_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_client < 1:
            raise ValueError(f"per_client must be >= 1, got {per_client}")
        self.app, self.path = app, path.rstrip("/")
        self.per_client, self.idle_s, self.clock = per_client, idle_s, clock
        # client -> session id -> last request time, least recently used first
        self._live: dict[str, OrderedDict[str, float]] = {}
        self.evicted = 0

    def sessions(self, key: str | None = None) -> int:
        """Live sessions known here, of one client or of all."""
        self._expire()
        if key is not None:
            return len(self._live.get(key, ()))
        return sum(len(s) for s in self._live.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        key = client_key(scope)
        sid = _header(scope, _SESSION)
        if sid is not None:
            await self._in_session(key, sid, scope, receive, send)
            return
        if scope.get("method") == "POST":
            await self._make_room(key, scope)
        await self.app(scope, receive, self._capture(key, send))

    async def _in_session(
        self, key: str, sid: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        mine = self._live.get(key)
        if mine is not None and sid in mine:
            mine[sid] = self.clock()
            mine.move_to_end(sid)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                gone = message["status"] == 404 or scope.get("method") == "DELETE"
                if gone and mine is not None:
                    mine.pop(sid, None)
            await send(message)

        await self.app(scope, receive, watch)

    def _capture(self, key: str, send: Send) -> Send:
        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                for name, value in message.get("headers", ()):
                    if bytes(name).lower() == _SESSION:
                        sid = bytes(value).decode("latin-1")
                        self._live.setdefault(key, OrderedDict())[sid] = self.clock()
            await send(message)

        return capture

    def _expire(self) -> None:
        """Forget sessions the SDK has reaped for idleness."""
        cutoff = self.clock() - self.idle_s
        for key in list(self._live):
            mine = self._live[key]
            while mine and next(iter(mine.values())) < cutoff:
                mine.popitem(last=False)
            if not mine:
                del self._live[key]

    async def _make_room(self, key: str, scope: Scope) -> None:
        self._expire()
        mine = self._live.get(key)
        while mine and len(mine) >= self.per_client:
            victim, last = mine.popitem(last=False)
            idle = self.clock() - last
            self.evicted += 1
            log.warning(
                "HTTP client %s opened session %d of at most %d; ended its least recently "
                "used session %s (idle %.0fs)",
                key,
                self.per_client + 1,
                self.per_client,
                victim[:8],
                idle,
            )
            await self._delete(scope, victim)

    async def _delete(self, scope: Scope, sid: str) -> None:
        """End session ``sid`` the way its client would: ``DELETE`` with its id."""
        headers = [(k, v) for k, v in scope.get("headers", ()) if bytes(k).lower() not in _DROPPED]
        headers.append((_SESSION, sid.encode("latin-1")))
        request: dict[str, Any] = {**scope, "method": "DELETE", "headers": headers}
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: Message) -> None:
            return None

        try:
            await self.app(request, receive, discard)
        except Exception:  # the session may have ended meanwhile; room is made either way
            log.exception("ending HTTP session %s failed", sid[:8])
