"""What every CLI command shares: the opened project (store, service, scheduler, knowledge
index), output helpers and exit codes.

Attempts this process runs feed the knowledge base like the server's do: their artifacts are
indexed and marked decisions written (``KnowledgeRecorder``), before the command returns. The
CLI does not watch files; commands that execute agent stages with the API runner first bring
the knowledge index up to date, so the stages get current knowledge. They feed the learning
profiles too (``stageflow.learning``): the profiles choose where a stage leaves a choice, the
service forecasts each new run, and before the command returns the profile tables catch up
with every run's log.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
from pydantic import BaseModel

from stageflow import events as ev
from stageflow.agents.live import LiveDefinitions
from stageflow.cli.exits import EXIT_FAIL, EXIT_OK, EXIT_PAUSED, EXIT_WAITING
from stageflow.cli.render import describe_event, render_run
from stageflow.config import Settings, load_settings
from stageflow.engine.driver import Until
from stageflow.engine.scheduler import RunBusy, Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.errors import SpecError
from stageflow.knowledge.decisions import KnowledgeRecorder, compose_sinks
from stageflow.knowledge.extras import knowledge_extras
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.learning.setup import Learning, build_learning
from stageflow.notify.dispatch import Notifier, build_notifier
from stageflow.store.store import Store
from stageflow.subagents.orchestrator.engine_questions import engine_questions
from stageflow.subagents.select import describe_runner, make_runner, resolve_runner_name
from stageflow.workspace.view import workspace_probe

log = logging.getLogger(__name__)


# commands that may execute agent stages here
DRIVING_COMMANDS = frozenset({"run", "approve", "reject", "resume", "retry"})
# commands that cannot do without the learning profiles (a bad [learning] fails them)
LEARNING_COMMANDS = frozenset({"estimate", "profiles"})
# commands whose drivers send notifications (``[notify]``)
NOTIFYING = DRIVING_COMMANDS | {"dashboard"}
NOTIFY_DRAIN_S = 15.0  # how long a command waits at exit for notifications still retrying


@dataclass
class App:
    settings: Settings
    store: Store
    service: Service
    scheduler: Scheduler
    out: TextIO
    quiet: bool
    knowledge: KnowledgeIndex
    # messages already printed by this command, so the final dashboard does not repeat them
    said: set[str] = field(default_factory=set)
    learning: Learning | None = None


@asynccontextmanager
async def open_app(
    args: argparse.Namespace, *, out: TextIO, offline_delay: float = 0.0
) -> AsyncIterator[App]:
    settings = load_settings(getattr(args, "project", None), db=getattr(args, "db", None))
    # a database that cannot be written (a read-only folder, a copy on read-only media) is
    # opened read-only: every read command works, and a write says what is wrong
    store = await Store.open(settings.db_path, access="auto")
    quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False))
    # `run --wait` on a terminal shows the live table instead of progress lines
    live_table = not quiet and _live_run(args, out)

    said: set[str] = set()

    def sink(env: ev.Envelope, state: RunState) -> None:
        if quiet or live_table:
            return
        line = describe_event(env, state, said)
        if line:
            out.write(line + "\n")
            out.flush()

    knowledge = KnowledgeIndex(store, settings)
    recorder = KnowledgeRecorder(store, knowledge, settings)
    notifier = build_notifier(settings) if getattr(args, "command", None) in NOTIFYING else None
    runner = None
    command = getattr(args, "command", None)
    driving = command in DRIVING_COMMANDS
    try:
        learning = _learning(settings, store, required=command in LEARNING_COMMANDS)
        runner = make_runner(
            settings,
            offline_delay=offline_delay,
            extras=knowledge_extras(knowledge, settings),
        )
        # each new attempt uses the agent's definition as the files say now (the server does
        # the same through its watcher); a running attempt keeps what it started with
        live = LiveDefinitions(settings) if driving else None
        scheduler = Scheduler(
            store,
            runner,
            max_concurrent_agents=settings.max_concurrent_agents,
            lease_seconds=settings.lease_seconds,
            sink=compose_sinks(
                sink,
                recorder.sink,
                notifier.sink if notifier else None,
                learning.updater.sink if learning else None,
            ),
            agents=live.agent if live is not None else None,
            chooser=learning.chooser if learning is not None else None,
            lanes=runner.lanes,
            orchestration=engine_questions(settings),
        )
        service = Service(
            settings,
            store,
            runner_label=describe_runner(settings),
            workspace_probe=workspace_probe(settings.project),
            estimator=learning.estimator if learning is not None else None,
            lanes=runner.lanes,
        )
        if driving:
            await _sync_for_stages(settings, knowledge)
        async with _notifying(notifier):
            try:
                yield App(
                    settings, store, service, scheduler, out, quiet, knowledge, said, learning
                )
            finally:
                await recorder.drain()  # what this process's attempts produced, before it exits
                if learning is not None:
                    await _catch_up(learning)
    finally:
        try:
            if runner is not None:
                await runner.aclose()  # the model client's connections, on this event loop
        finally:
            await store.close()


def _learning(settings: Settings, store: Store, *, required: bool) -> Learning | None:
    """The learning profiles; a mistake in their config fails the commands that need them
    and is a warning for the others (they run on the defaults)."""
    try:
        return build_learning(settings, store)
    except SpecError as exc:
        if required:
            raise
        log.warning("learning profiles are off: %s", exc)
        return None


async def _catch_up(learning: Learning) -> None:
    """Bring the profile tables up to date with every run's log (what this command ran, and
    anything a process that died left behind); a failure costs only the profiles."""
    try:
        await learning.updater.drain()
    except Exception:
        log.warning("could not update the learning profiles", exc_info=True)


@asynccontextmanager
async def _notifying(notifier: Notifier | None) -> AsyncIterator[None]:
    """Deliver notifications while the block runs, then wait a little for those still
    retrying (a run waits for nobody; the process exits a little later). The command's own
    errors come out as themselves, not wrapped in the task group's exception group."""
    if notifier is None:
        yield
        return
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            try:
                yield
            finally:
                await notifier.drain(NOTIFY_DRAIN_S)
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _sync_for_stages(settings: Settings, knowledge: KnowledgeIndex) -> None:
    """Update the index when stages may get knowledge from it (the model runners); a failure only
    costs the stages their enrichment."""
    if resolve_runner_name(settings) not in ("anthropic", "claude-code"):
        return
    try:
        await knowledge.sync()
    except Exception:
        log.warning("could not update the knowledge index", exc_info=True)


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
    """Continue the run here unless another live process is executing it (then say which)."""
    try:
        return await app.scheduler.drive(run_id, until=until)
    except RunBusy as exc:
        if not app.quiet:
            app.out.write(f"{describe_owner(run_id, exc.owner)}\n")
        return None


def _live_run(args: argparse.Namespace, out: TextIO) -> bool:
    if getattr(args, "command", None) != "run" or not getattr(args, "wait", False):
        return False
    from stageflow.cli.live import live_terminal

    return live_terminal(out)


def describe_owner(run_id: str, owner: str | None) -> str:
    """Who executes the run, for a human: ``host:pid:nonce`` spelled out."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    who = f"process {pid} on {host}" if pid.isdigit() else f"another process ({owner})"
    return (
        f"run {run_id} is executed by {who}, which continues it; follow it with "
        f"`stageflow status {run_id}`"
    )


async def show(
    app: App, run_id: str, *, as_json: bool, drove: bool = False, waited: bool = False
) -> int:
    """Print the run; exit 1 when it failed. After a command that executed it (``drove``) the
    code says where it stopped: 1 failed or cancelled, 6 paused (at its budget or by
    request), with ``waited`` (``--wait``) 5 when a gate needs a human; else 0."""
    view = await app.service.view(run_id)
    if as_json:
        emit(app, view)
    else:
        render_run(view, app.out, said=app.said)
    if view.status == "failed" or (drove and view.status == "cancelled"):
        return EXIT_FAIL
    if not drove:
        return EXIT_OK
    if view.status == "paused":
        return EXIT_PAUSED
    if waited and view.status == "waiting":
        return EXIT_WAITING
    return EXIT_OK
