"""A request whose reply timed out may have been processed and billed: it is never re-sent
under the same budget reservation (found by review: the SDK's own retries re-sent it, so one
reservation covered up to three billed requests). The failure goes to the caller, marked
maybe billed, which keeps the reservation as spent."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stageflow.errors import ModelError
from stageflow.models.anthropic import AnthropicClient
from stageflow.models.client import ModelCall

pytestmark = pytest.mark.anyio


def _slow_first_api(seen: list[int]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append(body["max_tokens"])
            if len(seen) == 1:
                time.sleep(2.0)  # the provider works (and bills) past the client's timeout
            out = json.dumps(
                {
                    "id": f"m{len(seen)}",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": "x"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up on the first one
                self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def test_a_timed_out_request_is_not_sent_again() -> None:
    seen: list[int] = []
    server = _slow_first_api(seen)
    try:
        client = AnthropicClient(
            api_key="k", base_url=f"http://127.0.0.1:{server.server_port}", timeout=1.0
        )
        call = ModelCall(
            model="claude-sonnet-4-6",
            system=[],
            tools=[],
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=512,
        )
        with pytest.raises(ModelError) as failed:
            await client.send(call)
        await client.aclose()
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [512]  # sent once
    assert failed.value.kind == "connection" and failed.value.maybe_billed
