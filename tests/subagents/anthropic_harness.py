"""Driving real runs with the anthropic runner against the Messages API stand-in.

``ApiProject`` runs the ``stageflow`` command in-process (``stageflow.cli.main.main``) on a git
project from ``tests.standin.project``, with ``STAGEFLOW_RUNNER=anthropic`` and the real
``anthropic`` client pointed at a ``StandIn`` (``use_standin``). It reads the cost ledger the
way another process would, and runs git in the project and the run's worktree.

``Outage`` is a stand-in whose port nothing listens on (connections are refused) until
``end()``, for connection-failure tests.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import pytest

from stageflow.cli.main import main
from stageflow.engine.views import RunView, StageView
from stageflow.store.rows import RequestRow
from stageflow.store.store import Store
from tests.cli.harness import Outcome, exit_code
from tests.standin import StandIn, Turn
from tests.standin.project import TASK
from tests.standin.server import Recorded
from tests.standin.wire import Json, text_of

ENV_CLEARED = ("STAGEFLOW_DB", "STAGEFLOW_PROJECT", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE")


def use_standin(mp: pytest.MonkeyPatch, base_url: str) -> None:
    """The environment a user of the API runner has, with the API at ``base_url``."""
    for var in ENV_CLEARED:
        mp.delenv(var, raising=False)
    mp.setenv("STAGEFLOW_RUNNER", "anthropic")
    mp.setenv("ANTHROPIC_API_KEY", "test")
    mp.setenv("ANTHROPIC_BASE_URL", base_url)


@dataclass
class ApiProject:
    """A project and the stand-in its runs talk to."""

    root: Path
    api: StandIn

    def __call__(self, *argv: str) -> Outcome:
        """``stageflow ARGV --project ROOT`` in-process; stdout and stderr captured."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([*argv, "--project", str(self.root)], out=out)
        return Outcome(code, out.getvalue(), err.getvalue())

    def view(self, *argv: str) -> RunView:
        """A command with ``--json`` that prints a run; its exit code says where the run
        stopped (1 failed, 6 paused...; ``tests.cli.harness.exit_code``)."""
        result = self(*argv, "--json")
        assert result.code in (0, 1, 5, 6), (argv, result.err, result.out[-2000:])
        view = result.view()
        drove = argv[0] in ("run", "approve", "reject", "resume", "retry")
        want = exit_code(view.status, waited="--wait" in argv) if drove else None
        if not drove:
            want = 1 if view.status == "failed" else 0
        assert result.code == want, result.err
        return view

    def run(self, template: str, *extra: str, task: str = TASK) -> RunView:
        return self.view("run", template, "--task", task, *extra)

    def status(self, run_id: str) -> RunView:
        return self.view("status", run_id)

    def approve_until_done(self, view: RunView, *, limit: int = 10) -> tuple[RunView, list[str]]:
        """Approve whatever waits until the run ends; returns the last view and the stages."""
        decided: list[str] = []
        for _ in range(limit):
            if view.status != "waiting":
                return view, decided
            stage = view.waiting[0].stage
            decided.append(stage)
            view = self.view("approve", view.run_id, "--stage", stage)
        raise AssertionError(f"run {view.run_id} still waiting after {limit} approvals")

    def artifact(self, run_id: str, stage: str, name: str) -> str:
        result = self("artifact", run_id, stage, name, "--json")
        assert result.code == 0, result.err
        return str(result.json()["content"])

    def write_template(self, text: str) -> None:
        """A project-layer template (``.stageflow/workflows/<name>.yaml``)."""
        text = textwrap.dedent(text)
        name = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln[:5] == "name:")
        path = self.root / ".stageflow" / "workflows" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def write_config(self, text: str) -> None:
        path = self.root / ".stageflow" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def ledger(self, run_id: str) -> list[RequestRow]:
        """The run's cost ledger, read through a fresh ``Store`` connection."""

        async def read() -> list[RequestRow]:
            with anyio.fail_after(10):
                async with await Store.open(self.root / ".stageflow" / "state.db") as store:
                    return await store.ledger.list(run_id)

        return anyio.run(read)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout


# -- reading the stand-in's records --------------------------------------------------------


def stage_of(view: RunView, stage_id: str) -> StageView:
    return next(s for s in view.stages if s.id == stage_id)


def requests_of(api: StandIn, stage: str) -> list[Recorded]:
    """Message requests of one stage, in arrival order."""
    return [r for r in api.message_requests() if r.stage == stage]


def first_request(api: StandIn, stage: str) -> Recorded:
    """The only request that opened an attempt of ``stage``."""
    [first] = [r for r in api.first_requests() if r.stage == stage]
    return first


def body_text(body: Json) -> str:
    """Everything a request shows the model: system, tool definitions and every message (text,
    tool uses and tool results), as one string."""
    parts = [text_of(body.get("system")), repr(body.get("tools"))]
    for message in body.get("messages") or []:
        content = message.get("content")
        parts.append(text_of(content))
        if isinstance(content, list):
            parts += [repr(b.get("input")) for b in content if b.get("type") == "tool_use"]
    return "\n".join(parts)


def tool_uses(rec: Recorded, name: str | None = None) -> list[Json]:
    """The ``tool_use`` blocks of the stand-in's answer to ``rec``."""
    content = (rec.reply or {}).get("content") or []
    return [
        b for b in content if b.get("type") == "tool_use" and (name is None or b["name"] == name)
    ]


def tool_results(body: Json) -> list[Json]:
    """Every ``tool_result`` block a request carries."""
    out: list[Json] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            out += [b for b in content if b.get("type") == "tool_result"]
    return out


def submission(turn: Turn) -> dict[str, Any] | None:
    """The ``submit_result`` input of a scripted turn, if it submits (mutable in place)."""
    for block in turn.content:
        if block.get("type") == "tool_use" and block.get("name") == "submit_result":
            args: dict[str, Any] = block["input"]
            return args
    return None


# -- an API that is down, then back --------------------------------------------------------


class Outage:
    """``with Outage() as outage:`` a stand-in whose port refuses connections until
    ``outage.end()`` starts serving on it (``outage.api``, ``outage.base_url``)."""

    def __init__(self, respond: Callable[[Json], Any] | None = None) -> None:
        self.api = StandIn(respond=respond)
        self.base_url = self.api.base_url
        self._port = int(self.api.httpd.server_address[1])
        self._handler = self.api.httpd.RequestHandlerClass
        self.api.httpd.server_close()  # nothing listens now: connections are refused
        self.ended = False

    def end(self) -> None:
        """The API is back: serve the stand-in on the same port."""
        if self.ended:
            return
        self.api.httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler)
        self.api.httpd.daemon_threads = True
        self.api.__enter__()
        self.ended = True

    def __enter__(self) -> Outage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ended:  # (a server that never served cannot be shut down: it would wait)
            self.api.__exit__(exc_type, exc, tb)
