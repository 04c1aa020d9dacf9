"""A real dashboard on a loopback port (uvicorn, port 0) over an engine harness's project."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx
import uvicorn

from stageflow.dashboard.app import DashboardDeps, dashboard_app
from stageflow.dashboard.guard import new_token
from stageflow.engine.scheduler import RunBusy
from tests.engine.harness import Env, wait_until

GATED = """
name: gated
stages:
  - {id: architecture, agent: worker, produces: [design], approval: required}
  - {id: coding, agent: worker, depends_on: [architecture], produces: [patch]}
"""


@dataclass
class Served:
    base: str
    token: str
    port: int
    decided: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.base

    def url(self, path: str = "/") -> str:
        return f"{self.base}{path}?token={self.token}"


@asynccontextmanager
async def served(
    env: Env, *, host: str = "127.0.0.1", drive: bool = True, user: str = "tester"
) -> AsyncIterator[Served]:
    """Serve the dashboard of ``env`` until the block ends; a decision drives the run on."""
    token = new_token()
    async with anyio.create_task_group() as tg:
        holder: list[Served] = []

        async def go(run_id: str) -> None:
            try:
                await env.scheduler.drive(run_id, until="idle")
            except RunBusy:
                return

        def on_decided(run_id: str) -> None:
            holder[0].decided.append(run_id)
            if drive:
                tg.start_soon(go, run_id)

        deps = DashboardDeps(
            service=env.service, store=env.store, on_decided=on_decided, user=user, poll_s=0.05
        )
        app = dashboard_app(deps, token=token, host=host)
        config = uvicorn.Config(
            app,
            host=host,
            port=0,
            log_config=None,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,  # open event streams end then
        )
        server = uvicorn.Server(config)
        stopped = anyio.Event()

        async def serve() -> None:
            try:
                await server.serve()
            finally:
                stopped.set()

        tg.start_soon(serve)

        async def started() -> bool:
            return bool(server.started)

        await wait_until(started, limit=10)
        port = next(int(s.getsockname()[1]) for srv in server.servers for s in srv.sockets)
        shown = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
        holder.append(Served(base=f"http://{shown}:{port}", token=token, port=port))
        try:
            yield holder[0]
        finally:
            server.should_exit = True
            with anyio.fail_after(10):
                await stopped.wait()
            tg.cancel_scope.cancel()  # runs still being driven stop where they are


@asynccontextmanager
async def browser_session(s: Served) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that opened the printed URL: it holds the session cookie."""
    async with httpx.AsyncClient(base_url=s.base, timeout=10) as client:
        r = await client.get(f"/?token={s.token}")
        assert r.status_code == 303 and r.headers["location"] == "/"
        yield client


def csrf_of(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
