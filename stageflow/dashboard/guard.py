"""Who may use the dashboard: the Host/Origin rules of the MCP HTTP transport, a per-process
token, browser sessions and CSRF tokens.

- **Host/Origin**: the Host header must name this machine's loopback, the bind address or an
  allowed name (DNS rebinding); an Origin header, when sent, must be one of those too, and a
  POST must send one.
- **Token**: the printed URL carries ``?token=``; the first request with it gets a session
  cookie (HttpOnly, SameSite=Strict) and is redirected to the same page without the token, so
  it leaves the address bar and the history. Every other request needs the cookie. The token is
  required on every bind, loopback included.
- **CSRF**: each session has its own CSRF token, embedded in every form; a POST without the
  session's token is refused (``check_csrf``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DashboardGuard", "Session", "allowed_host_names", "new_token"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
MAX_SESSIONS = 256
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # same-origin: with no-referrer Chromium sends "Origin: null" on the page's own POSTs
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def new_token() -> str:
    """A fresh dashboard token (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def allowed_host_names(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names (no port, IPv6 without brackets, lower case) a client may use in Host."""
    names = set(LOOPBACK_NAMES)
    bind = host.strip().strip("[]").lower()
    if bind in WILDCARD_BINDS:
        names.add(socket.gethostname().lower())
    else:
        names.add(bind)
    names.update(n.strip().strip("[]").lower() for n in extra if n.strip())
    return frozenset(names)


def _name_of(host_header: str) -> str:
    """``host[:port]`` as a bare lower-case name (``[::1]:80`` -> ``::1``)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") > 1:  # a bare IPv6 literal
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return value.partition(":")[0]


@dataclass(frozen=True)
class Session:
    """One browser session: its cookie value and its CSRF token."""

    id: str
    csrf: str

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class DashboardGuard:
    """ASGI middleware enforcing the rules of the module docstring.

    ``scope["state"]["session"]`` holds the request's ``Session`` once it passes. Static files
    (``/static/``) need no session (they hold nothing), but pass the Host/Origin checks.
    """

    def __init__(
        self, app: ASGIApp, *, token: str, host: str, allowed_hosts: Iterable[str] = ()
    ) -> None:
        if not token.strip():
            raise ValueError("the dashboard needs a token")
        self.app = app
        self._token = token.encode()
        self._names = allowed_host_names(host, allowed_hosts)
        # cookies are not per port: two dashboards on one host must not share a name
        self.cookie = "stageflow_dashboard_" + hashlib.sha256(self._token).hexdigest()[:12]
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if _name_of(headers.get("host", "")) not in self._names:
            await _refuse(send, 421, "this dashboard is not served under that Host name")
            return
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin):
            await _refuse(send, 403, "cross-origin request refused")
            return
        if scope["method"] not in ("GET", "HEAD") and origin is None:
            await _refuse(send, 403, "a POST must come from the dashboard's own page (no Origin)")
            return
        path: str = scope["path"]
        if path.startswith("/static/"):
            await self.app(scope, receive, _with_headers(send))
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        sent = query.get("token")
        if sent is not None and scope["method"] == "GET":
            if not hmac.compare_digest(sent.encode(), self._token):
                await _refuse(send, 401, "wrong token: open the URL stageflow printed")
                return
            fresh = self._new_session()
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            await _redirect(send, path + (f"?{rest}" if rest else ""), self.cookie, fresh.id)
            return
        session = self._session_of(headers.get("cookie", ""))
        if session is None:
            await _refuse(
                send, 401, "no dashboard session: open the URL stageflow printed (with ?token=)"
            )
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, _with_headers(send))

    def _origin_ok(self, origin: str) -> bool:
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and _name_of(rest) in self._names

    def _new_session(self) -> Session:
        session = Session(id=secrets.token_urlsafe(24), csrf=secrets.token_urlsafe(24))
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def _session_of(self, cookie_header: str) -> Session | None:
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                found = self._sessions.get(value)
                if found is not None:
                    self._sessions.move_to_end(value)
                    return found
        return None


def _with_headers(send: Send) -> Send:
    async def wrapped(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))  # type: ignore[call-overload]
            headers.extend(SECURITY_HEADERS)
            message = {**message, "headers": headers}
        await send(message)

    return wrapped  # type: ignore[return-value]


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = detail.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, cookie: str, session_id: str) -> None:
    set_cookie = f"{cookie}={session_id}; HttpOnly; SameSite=Strict; Path=/"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode("latin-1", "replace")),
                (b"set-cookie", set_cookie.encode()),
                (b"content-length", b"0"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
