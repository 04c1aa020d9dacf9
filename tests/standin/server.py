"""A loopback stand-in of the Anthropic Messages API for tests and benchmarks.

``with StandIn() as api:`` serves ``POST /v1/messages`` on ``api.base_url`` (127.0.0.1, a free
port) for the real ``anthropic.AsyncAnthropic`` client or the Claude Code CLI
(``ANTHROPIC_BASE_URL``). Every request is recorded in ``api.requests``. Each message request is
answered by, in order:

1. the queue of injected replies (``push_error``, ``push_message``, ``push``), consumed first;
2. the per-test hook ``api.respond(body)``, when it returns something;
3. the scripted ``StageAgent`` (``tests.standin.agent``).

Message replies get deterministic usage (``tests.standin.tokens``) split by the prompt-cache
simulation (``tests.standin.caching``), an id, and the model asked for (or
``api.answered_model[asked]``). ``"stream": true`` is answered with SSE. Also served:
``POST /v1/messages/count_tokens``; any GET/HEAD answers ``{}``; an unknown POST is a 404 error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from types import TracebackType
from typing import Any

from tests.standin.agent import AgentConfig, StageAgent, Turn
from tests.standin.caching import PromptCache
from tests.standin.reading import STAGE_RE, stage_info
from tests.standin.tokens import output_tokens, prompt_blocks, prompt_tokens
from tests.standin.wire import Json, Reply, error_reply, message, sse_events

log = logging.getLogger(__name__)

MAX_BREAKPOINTS = 4  # the real API refuses more cache_control blocks than this
Hook = Callable[[Json], "Reply | Json | Turn | None"]


@dataclass
class Recorded:
    """One request the stand-in received, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Json
    status: int = 0
    usage: Json | None = None  # the usage sent back with a message reply
    reply: Json | None = None

    @property
    def is_message(self) -> bool:
        return self.method == "POST" and self.path == "/v1/messages"

    @property
    def stage(self) -> str | None:
        """The stage id named by the request's brief (``# Stage `id```), if any."""
        found = STAGE_RE.search(stage_info(self.body).brief) if self.is_message else None
        return found.group(1) if found else None

    @property
    def prompt_tokens(self) -> int:
        """input + cache read + cache write of the answered usage (0 when not answered)."""
        u = self.usage or {}
        return int(
            u.get("input_tokens", 0)
            + u.get("cache_read_input_tokens", 0)
            + u.get("cache_creation_input_tokens", 0)
        )


@dataclass
class Totals:
    """Usage summed over answered message requests."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    by_model: dict[str, int] = field(default_factory=dict)  # answered model -> requests

    @property
    def prompt_tokens(self) -> int:
        """Everything sent as prompt: plain input, cache reads and cache writes."""
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
        )

    @property
    def cache_read_share(self) -> float:
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class StandIn:
    """The stand-in server; see the module docstring."""

    def __init__(
        self,
        *,
        agent: StageAgent | None = None,
        config: AgentConfig | None = None,
        respond: Hook | None = None,
        answered_model: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_breakpoints: int | None = MAX_BREAKPOINTS,
    ) -> None:
        self.agent = agent or StageAgent(config)
        self.respond = respond
        self.answered_model: dict[str, str] = dict(answered_model or {})
        self.cache = PromptCache(clock=clock)
        self.max_breakpoints = max_breakpoints
        self.requests: list[Recorded] = []
        self.queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = count(1)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StandIn:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), name="standin", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- scripting -------------------------------------------------------------------------

    def push(self, reply: Reply) -> None:
        """Queue a reply for the next message request (before the hook and the agent)."""
        with self._lock:
            self.queue.append(reply)

    def push_error(
        self,
        status: int | None,
        kind: str,
        text: str = "",
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue an API error, e.g. ``push_error(529, "overloaded_error",
        headers={"retry-after-ms": "1"})``."""
        self.push(error_reply(status, kind, text, headers))

    def push_message(
        self, content: list[Json], stop_reason: str = "end_turn", **fields: Any
    ) -> None:
        """Queue an assistant message (usage filled in unless ``usage=`` is given)."""
        self.push(Reply(200, message(content, stop_reason, **fields)))

    # -- reading what happened -------------------------------------------------------------

    def message_requests(self) -> list[Recorded]:
        """The ``POST /v1/messages`` requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.is_message]

    def first_requests(self) -> list[Recorded]:
        """Message requests that open a conversation (one message): one per attempt start."""
        return [r for r in self.message_requests() if len(r.body.get("messages") or []) == 1]

    def totals(self) -> Totals:
        """Usage summed over every answered message request."""
        out = Totals()
        for r in self.message_requests():
            if r.usage is None or r.reply is None:
                continue
            u = r.usage
            created = u.get("cache_creation") or {}
            out.requests += 1
            out.input_tokens += int(u.get("input_tokens", 0))
            out.output_tokens += int(u.get("output_tokens", 0))
            out.cache_read_tokens += int(u.get("cache_read_input_tokens", 0))
            five = int(created.get("ephemeral_5m_input_tokens", 0))
            hour = int(created.get("ephemeral_1h_input_tokens", 0))
            if not created:  # a pushed usage without the breakdown: all 5m
                five = int(u.get("cache_creation_input_tokens", 0))
            out.cache_write_5m_tokens += five
            out.cache_write_1h_tokens += hour
            model = str(r.reply.get("model"))
            out.by_model[model] = out.by_model.get(model, 0) + 1
        return out

    def reset(self) -> None:
        """Forget recorded requests, queued replies and cache entries."""
        with self._lock:
            self.requests.clear()
            self.queue.clear()
        self.cache.clear()

    # -- answering -------------------------------------------------------------------------

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: Json) -> Recorded:
        rec = Recorded(method, path, {k.lower(): v for k, v in headers.items()}, body)
        with self._lock:
            self.requests.append(rec)
        return rec

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_{next(self._ids):06d}"

    def answer(self, body: Json) -> Reply:
        """The reply to one ``/v1/messages`` body (the queue, the hook, then the agent)."""
        problem = self._invalid(body)
        if problem:
            return error_reply(400, "invalid_request_error", problem)
        with self._lock:
            queued = self.queue.popleft() if self.queue else None
        reply = queued or self._from_hook(body) or self._from_agent(body)
        if not reply.is_message:
            return reply
        msg = dict(reply.body)
        asked = str(body.get("model", ""))
        msg.setdefault("id", self._next_id("msg"))
        msg.setdefault("model", self.answered_model.get(asked, asked))
        cache = self.cache.account(asked, prompt_blocks(body))
        msg.setdefault("usage", cache.as_usage(output_tokens(msg.get("content") or [])))
        return Reply(reply.status, msg, reply.headers)

    def _invalid(self, body: Json) -> str | None:
        missing = [k for k in ("model", "max_tokens", "messages") if k not in body]
        if missing:
            return f"{missing[0]}: Field required"
        if self.max_breakpoints is not None:
            marks = sum(1 for b in prompt_blocks({**body, "cache_control": None}) if b.breakpoint)
            marks += 1 if body.get("cache_control") else 0
            if marks > self.max_breakpoints:
                return (
                    f"A maximum of {self.max_breakpoints} blocks with cache_control may be "
                    f"provided. Found {marks}."
                )
        return None

    def _from_hook(self, body: Json) -> Reply | None:
        if self.respond is None:
            return None
        return _as_reply(self.respond(body))

    def _from_agent(self, body: Json) -> Reply:
        reply = _as_reply(self.agent.turn(body))
        assert reply is not None
        return reply


def _as_reply(value: Reply | Json | Turn | None) -> Reply | None:
    if value is None or isinstance(value, Reply):
        return value
    if isinstance(value, Turn):
        return Reply(200, message(value.content, value.stop_reason))
    return Reply(200, value)


def _handler(api: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real API

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("standin: " + format, *args)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            path = self.path.split("?", 1)[0]
            try:
                body: Json = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            rec = api._record("POST", path, dict(self.headers), body)
            if path == "/v1/messages":
                reply = api.answer(body)
                rec.status = reply.status
                if reply.is_message:
                    rec.reply = reply.body
                    rec.usage = reply.body.get("usage")
                if reply.is_message and body.get("stream"):
                    data = b"".join(sse_events(reply.body))
                    self._send(reply.status, "text/event-stream", data, reply.headers)
                else:
                    self._send_json(reply.status, reply.body, reply.headers)
            elif path == "/v1/messages/count_tokens":
                rec.status = 200
                self._send_json(200, {"input_tokens": prompt_tokens(body)})
            else:
                log.info("standin: unhandled POST %s", path)
                rec.status = 404
                self._send_json(404, error_reply(404, "not_found_error", f"no route {path}").body)

        def do_GET(self) -> None:
            rec = api._record("GET", self.path.split("?", 1)[0], dict(self.headers), {})
            rec.status = 200
            self._send_json(200, {})

        def do_HEAD(self) -> None:
            rec = api._record("HEAD", self.path.split("?", 1)[0], dict(self.headers), {})
            rec.status = 200
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "0")
            self.end_headers()

        def _send_json(
            self, status: int, payload: Json, headers: Mapping[str, str] | None = None
        ) -> None:
            self._send(status, "application/json", json.dumps(payload).encode(), headers)

        def _send(
            self, status: int, ctype: str, data: bytes, headers: Mapping[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", api._next_id("req"))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
