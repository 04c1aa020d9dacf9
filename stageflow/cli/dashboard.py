"""``stageflow dashboard``: the live dashboard for the project, in the browser.

Prints the URL with this process's token (required on every bind) and serves until
interrupted. A decision taken in the dashboard continues the run here, unless another live
process (a server, a terminal) executes it, which then continues it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import webbrowser
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

from stageflow.cli.app import App
from stageflow.cli.exits import EXIT_OK
from stageflow.dashboard.app import DashboardDeps, dashboard_app
from stageflow.dashboard.guard import new_token
from stageflow.engine.scheduler import RunBusy
from stageflow.errors import InvalidArgument

log = logging.getLogger(__name__)

TOKEN_ENV = "STAGEFLOW_TOKEN"


def dashboard_url(host: str, port: int, token: str, path: str = "/") -> str:
    """The URL to open: ``http://host:port/path?token=...`` (IPv6 hosts in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown in ("0.0.0.0", "[::]", ""):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}{path}?token={token}"


async def cmd_dashboard(app: App, args: argparse.Namespace) -> int:
    import uvicorn

    if not 0 <= args.port <= 65535:
        raise InvalidArgument(f"--port must be 0..65535, got {args.port}")
    token = (os.environ.get(TOKEN_ENV) or "").strip() or new_token()
    async with anyio.create_task_group() as tg:

        async def drive(run_id: str) -> None:
            try:
                await app.scheduler.drive(run_id, until="terminal")
            except RunBusy:
                return  # another live process executes it and continues it
            except Exception:  # one broken run must not stop the dashboard
                log.exception("run %s: driver failed", run_id)

        deps = DashboardDeps(
            service=app.service,
            store=app.store,
            on_decided=lambda run_id: _start(tg, drive, run_id),
        )
        asgi = dashboard_app(
            deps,
            token=token,
            host=args.host,
            allowed_hosts=args.allow_host or (),
        )
        config = uvicorn.Config(
            asgi,
            host=args.host,
            port=args.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        tg.start_soon(server.serve)
        while not server.started:
            if server.should_exit:
                raise InvalidArgument(f"could not listen on {args.host}:{args.port}")
            await anyio.sleep(0.02)
        port = next(int(s.getsockname()[1]) for srv in server.servers for s in srv.sockets)
        url = dashboard_url(args.host, port, token)
        app.out.write(f"stageflow dashboard: {url}\n")
        app.out.flush()
        sys.stderr.flush()
        if args.open:
            webbrowser.open(url)
        try:
            await anyio.sleep_forever()
        finally:
            server.should_exit = True
    return EXIT_OK


def _start(tg: TaskGroup, fn: Callable[[str], Coroutine[Any, Any, None]], run_id: str) -> None:
    tg.start_soon(fn, run_id)
