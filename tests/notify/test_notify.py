"""Notifications: a webhook delivery to a local listener when a gate is reached, retried after
the listener first answers 500; a channel that keeps failing never blocks the run and is
logged; the command channel; ``[notify]`` mistakes named with their key."""

from __future__ import annotations

import io
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stageflow.config import load_settings
from stageflow.engine.scheduler import Scheduler
from stageflow.errors import SpecError
from stageflow.notify.config import notify_config
from stageflow.notify.dispatch import Notifier, build_notifier
from tests.dashboard.harness import GATED
from tests.engine.harness import Env, engine_env, wait_until
from tests.server.test_transports import serving

pytestmark = pytest.mark.anyio


def _configure(env: Env, body: str) -> Notifier:
    cfg = env.settings.project / ".stageflow" / "config.toml"
    cfg.write_text(textwrap.dedent(body), encoding="utf-8")
    notifier = build_notifier(load_settings(env.settings.project, runner="offline"))
    assert notifier is not None
    return notifier


def _scheduler(env: Env, notifier: Notifier) -> Scheduler:
    return Scheduler(env.store, env.runner, poll_interval=0.05, sink=notifier.sink)


def _listener(answers: list[int], got: list[dict[str, Any]]) -> Starlette:
    async def hook(request: Request) -> Response:
        got.append(json.loads(await request.body()))
        status = answers.pop(0) if answers else 200
        return JSONResponse({"ok": status == 200}, status_code=status)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def test_a_gate_reached_is_posted_to_the_webhook_and_retried_after_a_500(
    tmp_path: Path,
) -> None:
    got: list[dict[str, Any]] = []
    async with serving(_listener([500], got)) as port, engine_env(tmp_path, GATED) as env:
        notifier = _configure(
            env,
            f"""
            [notify]
            webhook = "http://127.0.0.1:{port}/hook"
            dashboard_url = "http://127.0.0.1:8766/"
            events = ["human_needed"]
            retries = 3
            backoff_seconds = 0.05
            """,
        )
        run = await env.service.start_run("gated", "build the cache")
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            with anyio.fail_after(10):
                state = await _scheduler(env, notifier).drive(run.run_id, until="idle")
            assert state.stages["architecture"].status == "awaiting_approval"

            async def delivered() -> bool:
                return ("webhook", "human_needed", run.run_id, True) in notifier.delivered

            await wait_until(delivered, limit=10)
            tg.cancel_scope.cancel()
    assert len(got) == 2 and got[0] == got[1]  # the 500, then the retry that passed
    body = got[1]
    assert body["kind"] == "human_needed" and body["run"] == run.run_id
    assert body["stage"] == "architecture"
    assert body["needed"] == "approve or reject the result of stage 'architecture' (attempt 1)"
    assert body["link"] == f"http://127.0.0.1:8766/runs/{run.run_id}"
    assert body["text"].startswith(f"stageflow gated {run.run_id}: approve or reject")  # Slack
    assert "token" not in json.dumps(body)


async def test_a_failing_channel_never_blocks_the_run_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[dict[str, Any]] = []
    async with serving(_listener([500] * 10, got)) as port, engine_env(tmp_path, GATED) as env:
        notifier = _configure(
            env,
            f"""
            [notify]
            webhook = "http://127.0.0.1:{port}/hook"
            retries = 2
            backoff_seconds = 0.05
            """,
        )
        run = await env.service.start_run("gated", "t")
        with caplog.at_level(logging.WARNING, logger="stageflow.notify"):
            async with anyio.create_task_group() as tg:
                await tg.start(notifier.run)
                sched = _scheduler(env, notifier)
                with anyio.fail_after(10):  # reaches the gate whatever the webhook does
                    await sched.drive(run.run_id, until="idle")
                await env.service.decide(run.run_id, stage="architecture", decision="approve")
                with anyio.fail_after(10):
                    state = await sched.drive(run.run_id, until="terminal")
                assert state.ended == "completed"
                await notifier.drain(10)
                tg.cancel_scope.cancel()
    assert len(got) == 6  # two notices (gate, end), each tried 1 + 2 times
    failed = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert len(failed) == 2 and "answered 500" in failed[0].getMessage()


async def test_the_command_channel_gets_the_notice_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "notice.json"
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, sys, pathlib\n"
        f"pathlib.Path({str(out)!r}).write_text(sys.stdin.read() + '\\n' + "
        "os.environ['STAGEFLOW_NOTICE_KIND'])\n",
        encoding="utf-8",
    )
    async with engine_env(tmp_path, GATED) as env:
        notifier = _configure(env, f"[notify]\ncommand = [{sys.executable!r}, {str(script)!r}]\n")
        run = await env.service.start_run("gated", "t")
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            with anyio.fail_after(10):
                await _scheduler(env, notifier).drive(run.run_id, until="idle")
            await notifier.drain(10)
            tg.cancel_scope.cancel()
    payload, kind = out.read_text(encoding="utf-8").rsplit("\n", 1)
    assert kind == "human_needed" and json.loads(payload)["stage"] == "architecture"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('webhook = "ftp://x"', "notify.webhook"),
        ("retries = -1", "notify.retries"),
        ('events = ["sometimes"]', "notify.events"),
        ("command = [1]", "notify.command"),
        ("webhok = 'http://x'", "notify.webhok"),
    ],
)
def test_notify_mistakes_name_the_key(tmp_path: Path, body: str, where: str) -> None:
    (tmp_path / ".stageflow").mkdir()
    (tmp_path / ".stageflow" / "config.toml").write_text(f"[notify]\n{body}\n", encoding="utf-8")
    with pytest.raises(SpecError) as err:
        notify_config(load_settings(tmp_path))
    assert err.value.problem.path == where
    assert "config.toml" in str(err.value)


async def test_the_cli_delivers_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stageflow.cli.main import main

    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    got: list[dict[str, Any]] = []
    async with serving(_listener([500], got)) as port, engine_env(tmp_path, GATED) as env:
        cfg = env.settings.project / ".stageflow" / "config.toml"
        hook = f"http://127.0.0.1:{port}/hook"
        cfg.write_text(f'[notify]\nwebhook = "{hook}"\nbackoff_seconds = 0.05\n', encoding="utf-8")
        project = str(env.settings.project)
        out = io.StringIO()
        argv = ["run", "gated", "--task", "t", "--project", project]
        code = await anyio.to_thread.run_sync(lambda: main(argv, out=out))
        assert code == 0, out.getvalue()
    assert [b["kind"] for b in got] == ["human_needed", "human_needed"]  # 500, then delivered
    assert got[1]["stage"] == "architecture"


async def test_the_server_delivers_a_notice_still_retrying_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # found by review: the server cancelled the notifier at exit, so a gate's notice waiting
    # for its retry (the webhook had answered 500) was lost
    from mcp import Client

    from stageflow.server.app import build_server
    from tests.server.test_tools_run import ok, status_until

    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    got: list[dict[str, Any]] = []
    async with serving(_listener([500], got)) as port, engine_env(tmp_path, GATED) as env:
        cfg = env.settings.project / ".stageflow" / "config.toml"
        hook = f"http://127.0.0.1:{port}/hook"
        cfg.write_text(f'[notify]\nwebhook = "{hook}"\nbackoff_seconds = 0.5\n', encoding="utf-8")
        settings = load_settings(env.settings.project, runner="offline")
        async with Client(build_server(settings)) as client:
            started = ok(
                await client.call_tool("workflow_start", {"template": "gated", "task": "t"})
            )
            await status_until(client, started["run_id"], lambda r: bool(r["waiting"]))

            async def answered() -> bool:  # the 500 came back; the retry waits 0.5 s
                return bool(got)

            await wait_until(answered, limit=10)
        # the session is over: the retry was delivered before the server stopped
        assert [b["kind"] for b in got] == ["human_needed", "human_needed"]
