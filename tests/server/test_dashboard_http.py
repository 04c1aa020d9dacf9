"""``serve --transport http`` serves the dashboard at ``/`` next to ``/mcp``: the server's own
store and service, its scheduler continuing a run approved in the browser, and the bearer token
guarding ``/mcp`` only (the dashboard has its own token and session)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from stageflow.server.app import build_server
from stageflow.server.transports import http_app
from tests.dashboard.harness import GATED, csrf_of
from tests.engine.harness import FakeRunner, engine_env, wait_until
from tests.server.test_transports import serving

pytestmark = pytest.mark.anyio


async def test_the_http_server_serves_the_dashboard_and_drives_an_approved_run(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run = await env.service.start_run("gated", "task")
        await env.scheduler.drive(run.run_id, until="idle")
        settings = env.settings
    run_id = run.run_id
    mcp = build_server(settings, runner=FakeRunner(), watch_files=False)
    app = http_app(mcp, "http", token="bearer-secret", dashboard_token="board-secret")
    async with serving(app) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.post("/mcp", json={})).status_code == 401  # bearer still needed
            assert (await client.get("/?token=bearer-secret")).status_code == 401
            assert (await client.get("/")).status_code == 401
            login = await client.get("/?token=board-secret")
            assert login.status_code == 303
            page = await client.get(f"/runs/{run_id}")
            assert page.status_code == 200 and 'data-status="awaiting_approval"' in page.text
            r = await client.post(
                f"/runs/{run_id}/decide",
                data={
                    "csrf": csrf_of(page.text),
                    "stage": "architecture",
                    "attempt": "1",
                    "decision": "approve",
                },
                headers={"origin": base},
            )
            assert r.status_code == 303

            async def completed() -> bool:
                html = (await client.get(f"/runs/{run_id}")).text
                return 'class="badge s-completed"' in html

            await wait_until(completed, limit=15)  # the server's scheduler drove it on
