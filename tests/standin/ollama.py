"""A stand-in for Ollama's HTTP API on loopback: ``POST /api/chat`` (non-streaming), the wire
protocol the official ``ollama`` client speaks. ``answer(body)`` gives the assistant message's
content (a JSON text when the request passes a ``format`` schema); every request is kept.
``refused_port()`` is a loopback port nothing listens on."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Json = dict[str, Any]


def refused_port() -> int:
    """A loopback port that refuses connections (bound once, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OllamaStandIn:
    """``with OllamaStandIn(answer) as ollama: ollama.host`` (see the module docstring)."""

    def __init__(self, answer: Callable[[Json], str]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, Json]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OllamaStandIn:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler(api: OllamaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body: Json = json.loads(self.rfile.read(length) or b"{}")
            api.requests.append((self.path, body))
            if self.path != "/api/chat":
                return self._send(404, {"error": f"no route {self.path}"})
            if body.get("stream") is not False:
                return self._send(400, {"error": "this stand-in answers stream=false only"})
            content = api.answer(body)
            self._send(
                200,
                {
                    "model": body.get("model"),
                    "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": content},
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": 120,
                    "eval_count": 24,
                },
            )

        def _send(self, status: int, data: Json) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler
