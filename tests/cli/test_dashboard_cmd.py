"""``stageflow dashboard`` as a real process: it prints the URL with its token, the URL opens a
session, and the token is required off loopback too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stageflow.config import load_settings
from stageflow.dashboard.app import DashboardDeps, dashboard_app
from stageflow.engine.service import Service
from stageflow.store.store import Store

pytestmark = pytest.mark.slow


def test_the_dashboard_command_prints_a_url_that_opens_a_session(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    env = {**os.environ, "STAGEFLOW_RUNNER": "offline"}
    env.pop("STAGEFLOW_TOKEN", None)
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stageflow", "dashboard", "--port", "0", "--project",
             str(tmp_path)],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        url = ""
        while not url and time.monotonic() < deadline:
            for line in out.read_text(encoding="utf-8").splitlines():
                if line.startswith("stageflow dashboard: http://127.0.0.1:"):
                    url = line.split(": ", 1)[1]
            time.sleep(0.05)
        assert url, out.read_text(encoding="utf-8")
        base, _, token = url.partition("/?token=")
        assert len(token) >= 32
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/").status_code == 401
            assert client.get("/?token=not-it").status_code == 401
            login = client.get(f"/?token={token}")
            assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
            page = client.get("/")
            assert page.status_code == 200 and "Nothing waits for a human." in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.anyio
async def test_off_loopback_the_token_is_required_and_the_host_checked(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, runner="offline")
    async with await Store.open(settings.db_path) as store:
        deps = DashboardDeps(service=Service(settings, store), store=store)
        app = dashboard_app(deps, token="t0ken-off-loopback", host="0.0.0.0")
        me = socket.gethostname().lower()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{me}:8766") as c:
            assert (await c.get("/")).status_code == 401
            assert (await c.get("/?token=wrong")).status_code == 401
            r = await c.get("/", headers={"host": "attacker.example:8766"})
            assert r.status_code == 421
            assert (await c.get("/?token=t0ken-off-loopback")).status_code == 303
            assert (await c.get("/")).status_code == 200
