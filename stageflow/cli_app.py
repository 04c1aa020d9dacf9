"""What every CLI command shares: the opened project (store, service, scheduler), output helpers
and exit codes."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from stageflow.cli_render import describe_event, render_run
from stageflow.config import Settings, load_settings
from stageflow.engine import events as ev
from stageflow.engine.driver import Until
from stageflow.engine.scheduler import RunBusy, Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.store.store import Store
from stageflow.subagents.select import describe_runner, make_runner
from stageflow.subagents.workspace_view import workspace_probe

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STATE = 0, 1, 2, 3, 4


@dataclass
class App:
    settings: Settings
    store: Store
    service: Service
    scheduler: Scheduler
    out: TextIO
    quiet: bool


@asynccontextmanager
async def open_app(
    args: argparse.Namespace, *, out: TextIO, offline_delay: float = 0.0
) -> AsyncIterator[App]:
    settings = load_settings(getattr(args, "project", None), db=getattr(args, "db", None))
    store = await Store.open(settings.db_path)
    quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False))

    def sink(env: ev.Envelope, state: RunState) -> None:
        if quiet:
            return
        line = describe_event(env, state)
        if line:
            out.write(line + "\n")
            out.flush()

    try:
        runner = make_runner(settings, offline_delay=offline_delay)
        scheduler = Scheduler(
            store,
            runner,
            max_concurrent_agents=settings.max_concurrent_agents,
            lease_seconds=settings.lease_seconds,
            sink=sink,
        )
        service = Service(
            settings,
            store,
            runner_label=describe_runner(settings),
            workspace_probe=workspace_probe(settings.project),
        )
        yield App(settings, store, service, scheduler, out, quiet)
    finally:
        await store.close()


def emit(app: App, model: BaseModel | list[Any] | dict[str, Any]) -> None:
    if isinstance(model, BaseModel):
        app.out.write(model.model_dump_json(indent=2) + "\n")
    else:
        app.out.write(json.dumps(model, indent=2, default=json_default) + "\n")


def json_default(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


async def drive(app: App, run_id: str, until: Until) -> RunState | None:
    """Continue the run here unless another live process is executing it."""
    try:
        return await app.scheduler.drive(run_id, until=until)
    except RunBusy as exc:
        if not app.quiet:
            app.out.write(f"note: {exc}\n")
        return None


async def show(app: App, run_id: str, *, as_json: bool) -> int:
    view = await app.service.view(run_id)
    if as_json:
        emit(app, view)
    else:
        render_run(view, app.out)
    return EXIT_FAIL if view.status == "failed" else EXIT_OK
