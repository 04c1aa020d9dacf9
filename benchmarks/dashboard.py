"""Dashboard first paint with many runs in the database: the run list's HTML (the first paint),
its script and style, and one run's page, over a real uvicorn on loopback.

Fills a temporary project with ``--runs`` runs (default 1,000) of a two-stage template: most
completed, ``--waiting`` (default 50) waiting at an approval gate, so "Needs you" has work.
Then requests each page ``--rounds`` times with a session cookie and prints medians and the
slowest. The goal for the list's first paint is under 300 ms; printed, not asserted.

    python benchmarks/dashboard.py [--runs 1000] [--waiting 50] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import uvicorn

from stageflow.config import load_settings
from stageflow.dashboard.app import DashboardDeps, dashboard_app
from stageflow.dashboard.guard import new_token
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.store.store import Store

GOAL_MS = 300.0
TEMPLATE = """\
name: bench
stages:
  - {id: build, agent: worker, produces: [patch]}
  - {id: review, agent: worker, depends_on: [build], produces: [notes], approval: required}
"""
WORKER = "---\nname: worker\ndescription: Works.\n---\nYou work.\n"


class QuickRunner:
    name = "bench"

    async def run(self, request: AttemptRequest) -> AttemptResult:
        arts = {n: f"# {n}\n\n- done by {request.stage.id}\n" for n in request.stage.produces}
        return AttemptResult(
            status="passed", summary="ok", artifacts=arts, runner="bench", model="bench"
        )


async def fill(project: Path, runs: int, waiting: int) -> tuple[Store, Service, str]:
    (project / ".stageflow" / "agents").mkdir(parents=True)
    (project / ".stageflow" / "workflows").mkdir(parents=True)
    (project / ".stageflow" / "agents" / "worker.md").write_text(WORKER, encoding="utf-8")
    (project / ".stageflow" / "workflows" / "bench.yaml").write_text(TEMPLATE, encoding="utf-8")
    settings = load_settings(project, runner="offline")
    store = await Store.open(settings.db_path)
    service = Service(settings, store, runner_label="bench")
    scheduler = Scheduler(store, QuickRunner(), poll_interval=0.01)
    t0 = time.perf_counter()
    last = ""
    for i in range(runs):
        run = await service.start_run("bench", f"task {i}: make the thing faster")
        await scheduler.drive(run.run_id, until="idle")
        if i >= waiting:
            await service.decide(run.run_id, stage="review", decision="approve", attempt=1)
            await scheduler.drive(run.run_id, until="terminal")
        last = run.run_id
        if (i + 1) % 200 == 0:
            sys.stderr.write(f"  {i + 1} runs ({time.perf_counter() - t0:.1f}s)\n")
    scheduler.close()
    return store, service, last


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, service, some_run = await fill(Path(tmp), args.runs, args.waiting)
        try:
            token = new_token()
            app = dashboard_app(
                DashboardDeps(service=service, store=store), token=token, host="127.0.0.1"
            )
            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, log_config=None, log_level="warning",
                lifespan="off",
            )  # fmt: skip
            server = uvicorn.Server(config)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                    await anyio.sleep(0.01)
                port = next(int(s.getsockname()[1]) for v in server.servers for s in v.sockets)
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                    await client.get(f"/?token={token}")
                    pages = {
                        "run list (first paint)": "/",
                        "dashboard.js + .css": None,
                        "one run's page": f"/runs/{some_run}",
                        "costs page": "/costs",
                    }
                    print(
                        f"dashboard with {args.runs} runs ({args.waiting} waiting), "
                        f"{args.rounds} rounds each (median / slowest, ms)"
                    )
                    for label, path in pages.items():
                        times: list[float] = []
                        size = 0
                        for _ in range(args.rounds):
                            t0 = time.perf_counter()
                            if path is None:
                                a = await client.get("/static/dashboard.js")
                                b = await client.get("/static/dashboard.css")
                                size = len(a.content) + len(b.content)
                            else:
                                r = await client.get(path)
                                assert r.status_code == 200, (path, r.status_code)
                                size = len(r.content)
                            times.append((time.perf_counter() - t0) * 1000)
                        med = statistics.median(times)
                        goal = ""
                        if path == "/":
                            met = "met" if med < GOAL_MS else "MISSED"
                            goal = f"   goal < {GOAL_MS:.0f} ms: {met}"
                        print(
                            f"  {label:<24} {med:8.1f} / {max(times):8.1f}   {size / 1024:7.1f} KiB"
                            + goal
                        )
                server.should_exit = True
        finally:
            await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--waiting", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    anyio.run(measure, args)


if __name__ == "__main__":
    main()
