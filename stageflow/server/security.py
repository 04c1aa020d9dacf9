"""HTTP security for ``stageflow serve``: who may bind where, which Host/Origin headers pass,
and the bearer token that guards every request on a non-loopback bind.

Loopback binds get the SDK's DNS-rebinding protection (only ``127.0.0.1``, ``localhost`` and
``[::1]`` as Host/Origin). Any other bind needs ``STAGEFLOW_TOKEN``: without it the server refuses
to start, with it every HTTP request must carry ``Authorization: Bearer <token>``. Host/Origin
checks stay on there too, with an explicit list of names the server may be reached by.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from stageflow.errors import InvalidArgument

TOKEN_ENV = "STAGEFLOW_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """True when ``host`` (a bind address or name) only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def require_token(host: str, token: str | None) -> str | None:
    """The token to enforce for a bind on ``host``; refuses a non-loopback bind without one.

    An empty or blank token counts as none. On loopback a given token is still enforced.
    """
    token = (token or "").strip() or None
    if token is None and not is_loopback(host):
        raise InvalidArgument(
            f"refusing to listen on non-loopback address {host!r} without a bearer token: "
            f"set {TOKEN_ENV} (clients then send 'Authorization: Bearer <token>'), "
            "or bind to 127.0.0.1"
        )
    return token


def _host_entry(name: str) -> str:
    """A Host header value as it appears on the wire (IPv6 literals in brackets)."""
    bare = name.strip().strip("[]")
    try:
        if ipaddress.ip_address(bare).version == 6:
            return f"[{bare}]"
    except ValueError:
        pass
    return bare


def transport_security(host: str, allowed_hosts: Iterable[str] = ()) -> TransportSecuritySettings:
    """Host/Origin validation settings for a bind on ``host``.

    Always on. Allowed: the loopback names, the bind address itself (unless it is a wildcard
    like ``0.0.0.0``), this machine's host name for wildcard binds, and ``allowed_hosts``; each
    with or without a port. Origins are the same names over http and https.
    """
    names: list[str] = list(LOOPBACK_NAMES)
    if host.strip() in WILDCARD_BINDS:
        names.append(socket.gethostname().lower())
    else:
        names.append(host)  # loopback too: 127.0.0.2 must accept its own Host header
    names.extend(allowed_hosts)
    entries = list(dict.fromkeys(_host_entry(n) for n in names if n.strip()))
    hosts = [h for e in entries for h in (e, f"{e}:*")]
    origins = [f"{scheme}://{h}" for scheme in ("http", "https") for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class BearerTokenMiddleware:
    """ASGI middleware: HTTP requests without ``Authorization: Bearer <token>`` get 401.

    Lifespan events pass through untouched, so the wrapped app still starts and stops.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._authorized(scope):
            await _unauthorized(scope, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope.get("headers", ()):
            if key.lower() == b"authorization":
                scheme, _, credentials = bytes(value).strip().partition(b" ")
                if scheme.lower() != b"bearer":  # the scheme is case-insensitive (RFC 7235)
                    return False
                # constant-time comparison: the token is the only secret here
                return hmac.compare_digest(credentials.strip(), self._expected)
        return False


async def _unauthorized(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = b'{"error": "unauthorized", "detail": "missing or wrong bearer token"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="stageflow"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
