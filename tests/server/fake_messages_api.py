"""A loopback stand-in for the Anthropic Messages API, scripted to drive stageflow's MCP tools.

Claude Code is pointed at it with ``ANTHROPIC_BASE_URL``. The script is a pure function of each
request (its tools and its last user turn), so retries and extra side requests cannot push it
off course:

0. a request whose tools do not include ``mcp__stageflow__workflow_start`` but whose
   conversation names it (a listing of deferred tools, or a stageflow prompt; Claude Code
   2.1.3xx loads MCP tool schemas on demand) gets a ``ToolSearch`` ``tool_use`` selecting the
   two tools;
1. a request offering ``mcp__stageflow__workflow_start`` and carrying no tool result yet gets a
   ``tool_use`` that starts a ``bugfix`` run;
2. the request carrying that tool's result gets a ``tool_use`` of ``workflow_status`` for the
   run id parsed from the result;
3. the request carrying the status result gets the final text answer.

Any other ``/v1/messages`` request (title or topic generation with a small model, a quota
probe) gets a short plain text reply. Unknown paths are logged and answered with an empty JSON
object (GET/HEAD) or 404 (POST). Both streaming (SSE) and non-streaming replies are spoken.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

START_TOOL = "mcp__stageflow__workflow_start"
STATUS_TOOL = "mcp__stageflow__workflow_status"
SEARCH_TOOL = "ToolSearch"
RUN_ID = re.compile(r"\br-[0-9a-z]{9}-[0-9a-z]{4}\b")
PROMPT_TEMPLATE = re.compile(r'Run the stageflow workflow "([A-Za-z0-9_]+)"')
COMMAND_ARGS = re.compile(r"<command-args>(.*?)</command-args>", re.S)
TASK_BLOCK = re.compile(r"<task>\n(.*?)\n</task>", re.S)
# what the prompt says when the <command-args> text is the task (stageflow/prompts/templates.py)
ARGS_NOTES = ("the task is that block's whole text", "its whole text is the task")
FINAL_TEXT = "The bugfix run is started and its status was checked."

Json = dict[str, Any]


@dataclass
class Seen:
    """What the fake observed, for the test's assertions (appended from server threads)."""

    requests: list[Json] = field(default_factory=list)  # {"method", "path", "headers", "body"}
    unknown: list[str] = field(default_factory=list)  # "METHOD /path" not otherwise handled
    tool_calls: list[tuple[str, Json]] = field(default_factory=list)  # (tool name, input) sent
    tool_results: dict[str, str] = field(default_factory=dict)  # tool name -> result text
    run_ids: list[str] = field(default_factory=list)  # parsed from workflow_start's result
    tool_searches: list[str] = field(default_factory=list)  # ToolSearch queries sent
    prompt_texts: list[str] = field(default_factory=list)  # conversations with a prompt


def _text_of(content: Any) -> str:
    """The text of a tool_result's content: a string or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(b.get("text", b.get("content", ""))) for b in content)
    return ""


class FakeMessagesAPI:
    """``with FakeMessagesAPI(task=...) as api: ... api.base_url ... api.seen``."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.seen = Seen()
        self._lock = threading.Lock()
        self._ids = count(1)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeMessagesAPI:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the script ------------------------------------------------------------------------

    def reply_to(self, body: Json) -> Json:
        """The assistant message for one ``/v1/messages`` request body."""
        tools = {t.get("name") for t in body.get("tools") or []}
        if START_TOOL not in tools:
            if SEARCH_TOOL in tools and "workflow_start" in json.dumps(body.get("messages")):
                # Claude Code defers MCP tools: their schemas load through its ToolSearch tool
                # (the conversation names the tool: a listing of deferred tools, or a prompt)
                query = f"select:{START_TOOL},{STATUS_TOOL}"
                with self._lock:
                    self.seen.tool_searches.append(query)
                return self._tool_use(body, SEARCH_TOOL, {"query": query}, record=False)
            return self._message(body, [{"type": "text", "text": "Bugfix run"}], "end_turn")
        results = self._last_tool_results(body)
        if START_TOOL in results:
            ids = RUN_ID.findall(results[START_TOOL])
            with self._lock:
                self.seen.tool_results[START_TOOL] = results[START_TOOL]
                self.seen.run_ids.extend(ids)
            if not ids:
                return self._message(body, [{"type": "text", "text": "No run id."}], "end_turn")
            return self._tool_use(body, STATUS_TOOL, {"run_id": ids[0]})
        if STATUS_TOOL in results:
            with self._lock:
                self.seen.tool_results[STATUS_TOOL] = results[STATUS_TOOL]
            return self._message(body, [{"type": "text", "text": FINAL_TEXT}], "end_turn")
        template, task = self._requested(body)
        return self._tool_use(body, START_TOOL, {"template": template, "task": task})

    def _requested(self, body: Json) -> tuple[str, str]:
        """The run the conversation asks for, read as an obedient model would. A stageflow prompt
        (a slash command) names its template; its task is the prompt's ``<task>``, unless the
        prompt says to take the ``<command-args>`` block Claude Code sends before it. Without a
        prompt: a ``bugfix`` run of ``self.task``."""
        text = "\n".join(_text_of(m.get("content")) for m in body.get("messages") or [])
        template = PROMPT_TEMPLATE.search(text)
        if template is None:
            return "bugfix", self.task
        args = COMMAND_ARGS.search(text)
        task = TASK_BLOCK.search(text)
        told = any(note in text for note in ARGS_NOTES)
        chosen = args.group(1) if args and told else (task.group(1) if task else "")
        with self._lock:
            self.seen.prompt_texts.append(text)
        return template.group(1), chosen

    def _last_tool_results(self, body: Json) -> dict[str, str]:
        """Tool name -> result text for the tool results in the last user turn."""
        messages = body.get("messages") or []
        names: dict[str, str] = {}  # tool_use id -> tool name, from the assistant turns
        for message in messages:
            if message.get("role") == "assistant" and isinstance(message.get("content"), list):
                for block in message["content"]:
                    if block.get("type") == "tool_use":
                        names[block["id"]] = block["name"]
        if not messages or messages[-1].get("role") != "user":
            return {}
        content = messages[-1].get("content")
        if not isinstance(content, list):
            return {}
        return {
            names.get(b.get("tool_use_id", ""), "?"): _text_of(b.get("content"))
            for b in content
            if b.get("type") == "tool_result"
        }

    def _tool_use(self, body: Json, name: str, arguments: Json, *, record: bool = True) -> Json:
        with self._lock:
            if record:
                self.seen.tool_calls.append((name, arguments))
            use_id = f"toolu_{next(self._ids):04d}"
        block = {"type": "tool_use", "id": use_id, "name": name, "input": arguments}
        return self._message(body, [block], "tool_use")

    def _message(self, body: Json, content: list[Json], stop_reason: str) -> Json:
        with self._lock:
            msg_id = f"msg_{next(self._ids):04d}"
        return {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-test"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }

    # -- the wire --------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real API

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("fake api: " + format, *args)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body: Json = json.loads(raw or b"{}")
                path = self.path.split("?", 1)[0]
                fake._record("POST", path, dict(self.headers), body)
                if path == "/v1/messages":
                    reply = fake.reply_to(body)
                    if body.get("stream"):
                        self._send(200, "text/event-stream", b"".join(_sse(reply)))
                    else:
                        self._send_json(200, reply)
                elif path == "/v1/messages/count_tokens":
                    self._send_json(200, {"input_tokens": 10})
                else:
                    fake._unknown("POST", path)
                    self._send_json(404, _error("not_found_error", f"no route {path}"))

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                fake._record("GET", path, dict(self.headers), None)
                fake._unknown("GET", path)
                self._send_json(200, {})

            def do_HEAD(self) -> None:
                fake._unknown("HEAD", self.path)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def _send_json(self, status: int, payload: Json) -> None:
                self._send(status, "application/json", json.dumps(payload).encode())

            def _send(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{len(fake.seen.requests)}")
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.seen.requests.append(
                {"method": method, "path": path, "headers": headers, "body": body}
            )

    def _unknown(self, method: str, path: str) -> None:
        log.info("fake api: unhandled %s %s", method, path)
        with self._lock:
            self.seen.unknown.append(f"{method} {path}")


def _error(kind: str, text: str) -> Json:
    return {"type": "error", "error": {"type": kind, "message": text}}


def _sse(message: Json) -> Iterator[bytes]:
    """The streaming event sequence that rebuilds ``message`` block by block."""

    def event(payload: Json) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()

    head = {**message, "content": [], "stop_reason": None}
    head["usage"] = {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}
    yield event({"type": "message_start", "message": head})
    for index, block in enumerate(message["content"]):
        start: Json
        delta: Json
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield event({"type": "content_block_start", "index": index, "content_block": start})
        yield event({"type": "content_block_delta", "index": index, "delta": delta})
        yield event({"type": "content_block_stop", "index": index})
    yield event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        }
    )
    yield event({"type": "message_stop"})
