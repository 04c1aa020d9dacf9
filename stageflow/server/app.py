"""``build_server``: the stageflow MCP server and its lifespan.

The lifespan opens the project's store, builds the runner, scheduler and service, and runs
``Scheduler.serve`` in a background task group for the server's whole life, so workflows keep
running between tool calls (and runs left by a dead process are adopted), next to a
``RunNotifier`` that tells resource subscribers when a run changes. Tools reach these objects
through ``ctx.request_context.lifespan_context`` (an ``AppContext``).

Definitions are live: ``LiveDefinitions`` holds the agents and templates, the service reads
them from it and the scheduler gives each new attempt its agent's current version; one file
watcher re-parses what changed and swaps them, and ``ReloadAnnouncer`` tells the clients (see
``stageflow.server.reload``). The knowledge index is brought up to date with the files in the
background at start (``KnowledgeIndex.sync``), kept current by the watcher, and fed by the
``KnowledgeRecorder`` (past runs' artifacts, recorded decisions). The learning profiles
(``stageflow.learning``) follow the runs' logs in the background, choose agents and models where
a stage leaves a choice, and forecast each run before it starts.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus

from stageflow import __version__
from stageflow.agents.live import LiveDefinitions
from stageflow.config import Settings
from stageflow.engine.runner import Runner
from stageflow.engine.scheduler import RunBusy, Scheduler
from stageflow.engine.service import Service
from stageflow.errors import SpecError
from stageflow.knowledge.decisions import KnowledgeRecorder, compose_sinks
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.server.client_log import ClientLogForwarder, RememberClients
from stageflow.server.notify import RunNotifier
from stageflow.server.reload import ClientSessions, ReloadAnnouncer, RememberSessions
from stageflow.store.store import Store

if TYPE_CHECKING:
    from stageflow.learning.setup import Learning

__all__ = ["INSTRUCTIONS", "AppContext", "build_server"]

log = logging.getLogger(__name__)

SERVER_DRAIN_S = 5.0  # how long the server waits at exit for notifications still retrying

KNOWLEDGE_SYNC_WAIT_S = 5.0
WATCH_START_WAIT_S = 5.0
# background work (adopting runs, the knowledge sync, the file watcher) starts once a client's
# first request arrived, so it does not compete with answering ``initialize`` on a busy
# machine; at the latest after this long (an HTTP server may see no request for a while)
FIRST_REQUEST_WAIT_S = 1.0

INSTRUCTIONS = """\
stageflow runs a big coding task as a durable workflow of short-lived subagents (design,
implement, test, review ...), each with a fresh context; runs survive restarts.
Protocol:
1. workflow_templates to see the templates, their stages, inputs and approval gates.
2. workflow_start(template, task) returns a run id at once; stages run in the background.
3. Poll workflow_status(run_id, wait_seconds=30): it returns when the run changes. Show the
   human the stages, costs and next action.
4. When the status lists a waiting gate, read the artifacts to review (workflow_artifact),
   ask the human, then workflow_approve(run_id, stage, decision='approve') or
   decision='reject' with feedback (the stage reruns with it). Never approve on your own.
5. When the run completes, read its artifacts with workflow_artifact.
workflow_control cancels, pauses, resumes or retries a run; workflow_adjust adds or skips a
stage, raises the concurrency or escalates a blocked stage, when the human asks for it.
knowledge_lookup searches the project's guidelines, patterns, ADRs, recorded decisions and
past runs' artifacts ("how do we do X here?"); stages get relevant knowledge automatically.
Agent and template files are reloaded when they change: no restart needed.
"""


@dataclass
class AppContext:
    """What every tool and resource handler of one server instance shares."""

    settings: Settings
    store: Store
    service: Service
    scheduler: Scheduler
    runner_label: str
    notifier: RunNotifier
    definitions: LiveDefinitions
    knowledge: KnowledgeIndex
    recorder: KnowledgeRecorder
    learning: Learning | None = None  # None: its config is wrong (logged at start)
    announcer: ReloadAnnouncer | None = None
    stop: anyio.Event = field(default_factory=anyio.Event)
    task_group: TaskGroup | None = None
    #: set once the first ``KnowledgeIndex.sync`` ended (searches before it see older data)
    knowledge_synced: anyio.Event = field(default_factory=anyio.Event)
    #: set once the file watcher is in place (or will not run)
    watching: anyio.Event = field(default_factory=anyio.Event)
    #: set by the first request a client sends (see ``FIRST_REQUEST_WAIT_S``)
    first_request: anyio.Event = field(default_factory=anyio.Event)

    async def warmed_up(self) -> None:
        """Wait for a client's first request, at most ``FIRST_REQUEST_WAIT_S``."""
        with anyio.move_on_after(FIRST_REQUEST_WAIT_S):
            await self.first_request.wait()

    def start_driving(self, run_id: str) -> None:
        """Execute ``run_id`` in the background now (not at the scheduler's next poll).

        Harmless when this process already drives the run or another live process does.
        """
        if self.task_group is None or self.stop.is_set():
            return
        self.task_group.start_soon(self._drive, run_id)

    async def knowledge_ready(self) -> None:
        """Wait (at most ``KNOWLEDGE_SYNC_WAIT_S``) for the start-up sync of the knowledge
        index, so a lookup in the server's first moments sees the files; then answer anyway."""
        with anyio.move_on_after(KNOWLEDGE_SYNC_WAIT_S):
            await self.knowledge_synced.wait()

    async def refresh_definitions(self) -> None:
        """Catch up with the agent and template files now, announcing any change like a reload.

        The catalog tools call it first (read-your-writes: a template saved a moment ago is
        there before the watcher's debounce ends, and without a watcher at all). Only the user
        and project folders are listed again; the package's built-ins do not change. The
        watcher starts in the background (``initialize`` does not wait for it); this waits for
        it (bounded), so after a catalog tool answered, every file change is seen.
        """
        with anyio.move_on_after(WATCH_START_WAIT_S):
            await self.watching.wait()
        report = await anyio.to_thread.run_sync(self.definitions.apply, _editable_dirs(self))
        if not report.empty and self.announcer is not None:
            await self.announcer.on_reload(report)

    async def _drive(self, run_id: str) -> None:
        try:
            await self.scheduler.drive(run_id, until="terminal", stop=self.stop)
        except RunBusy:
            return  # already driven, here or by another live process
        except Exception:  # one broken run must not take the server down
            log.exception("run %s: driver failed", run_id)


def _lifespan(
    settings: Settings,
    runner: Runner | None,
    bus: SubscriptionBus,
    logs: ClientLogForwarder,
    sessions: ClientSessions,
    requests: FirstRequest,
    *,
    watch_files: bool,
) -> Callable[[MCPServer[AppContext]], AbstractAsyncContextManager[AppContext]]:
    @asynccontextmanager
    async def lifespan(server: MCPServer[AppContext]) -> AsyncIterator[AppContext]:
        from stageflow.knowledge.extras import knowledge_extras
        from stageflow.notify.dispatch import build_notifier
        from stageflow.server.mcp_server import StageflowMCP
        from stageflow.subagents.orchestrator.engine_questions import engine_questions
        from stageflow.subagents.select import StageRunner, describe_runner, make_runner
        from stageflow.workspace.view import workspace_probe

        store = await Store.open(settings.db_path)
        try:
            notices = build_notifier(settings)
            live = LiveDefinitions(settings)
            knowledge = KnowledgeIndex(store, settings)
            recorder = KnowledgeRecorder(store, knowledge, settings)
            own_runner: StageRunner | None = None
            used: Runner
            if runner is None:
                used = own_runner = make_runner(
                    settings, extras=knowledge_extras(knowledge, settings)
                )
            else:
                used = runner
            learning = _learning(settings, store)
            lanes = used.lanes if isinstance(used, StageRunner) else None
            # the prompts of the live catalog (the server's own slash commands), as they stand
            # when it starts; tools and resources come on first use (StageflowMCP)
            from stageflow.prompts.templates import sync_prompts

            sync_prompts(server, settings, live.catalog)
            scheduler = Scheduler(
                store,
                used,
                max_concurrent_agents=settings.max_concurrent_agents,
                lease_seconds=settings.lease_seconds,
                sink=compose_sinks(
                    recorder.sink,
                    notices.sink if notices else None,
                    learning.updater.sink if learning else None,
                ),
                agents=live.agent,
                chooser=learning.chooser if learning is not None else None,
                lanes=lanes,
                orchestration=engine_questions(settings),
            )
            label = describe_runner(settings)
            notifier = RunNotifier(store, bus)
            app = AppContext(
                settings=settings,
                store=store,
                service=Service(
                    settings,
                    store,
                    runner_label=label,
                    workspace_probe=workspace_probe(settings.project),
                    definitions=live,
                    estimator=learning.estimator if learning is not None else None,
                    lanes=lanes,
                ),
                scheduler=scheduler,
                runner_label=label,
                notifier=notifier,
                definitions=live,
                knowledge=knowledge,
                recorder=recorder,
                learning=learning,
                announcer=ReloadAnnouncer(
                    server, settings, live, knowledge, notifier, bus, sessions
                ),
            )
            try:
                async with anyio.create_task_group() as tg:
                    app.task_group = tg
                    requests.seen = app.first_request
                    tg.start_soon(_after_first_request, app, scheduler.serve, app.stop)
                    await tg.start(app.notifier.run, app.stop)
                    await tg.start(logs.run, app.stop)
                    await tg.start(recorder.run, app.stop)
                    if notices is not None:
                        await tg.start(notices.run)
                    if learning is not None:  # catches up with every log, then follows them
                        tg.start_soon(_after_first_request, app, learning.updater.run, app.stop)
                    tg.start_soon(_after_first_request, app, _sync_knowledge, app)
                    if watch_files:
                        # in the background: a stdio client's ``initialize`` need not wait
                        tg.start_soon(_after_first_request, app, _watch, app)
                    else:
                        app.watching.set()
                    package_log = logging.getLogger("stageflow")
                    package_log.addHandler(logs)
                    if isinstance(server, StageflowMCP):
                        server.app_context = app
                    try:
                        yield app
                    finally:
                        if isinstance(server, StageflowMCP):
                            server.app_context = None
                        package_log.removeHandler(logs)
                        # Drivers stop where they are; every transition is already committed,
                        # and the next process to open the project resumes the runs.
                        app.stop.set()
                        if notices is not None:  # a gate's notice still retrying: a moment
                            with anyio.CancelScope(shield=True):
                                await notices.drain(SERVER_DRAIN_S)
                        tg.cancel_scope.cancel()
            finally:
                scheduler.close()
                if own_runner is not None:  # the model client's connections
                    with anyio.CancelScope(shield=True):
                        await own_runner.aclose()
        finally:
            await store.close()

    return lifespan


def _learning(settings: Settings, store: Store) -> Learning | None:
    """The learning profiles, or None (logged) when their config is wrong: runs then start
    on the defaults, and a set confirm_above_usd asks for every run's confirmation."""
    from stageflow.learning.setup import build_learning  # on the lifespan, not at import

    try:
        return build_learning(settings, store)
    except SpecError as exc:
        log.error("learning profiles are off: %s", exc)
        return None


async def _after_first_request(
    app: AppContext, fn: Callable[..., Awaitable[None]], *args: Any
) -> None:
    await app.warmed_up()
    await fn(*args)


class FirstRequest:
    """Middleware: marks the server's first request (``AppContext.first_request``)."""

    def __init__(self) -> None:
        self.seen: anyio.Event | None = None  # the lifespan's event, once it runs

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if self.seen is not None:
            self.seen.set()
        return await call_next(ctx)


def _editable_dirs(app: AppContext) -> list[Path]:
    """The agent and template folders a user can edit (every layer but the built-in one)."""
    layers = [*app.settings.agent_dirs(), *app.settings.template_dirs()]
    return [path for layer, path in layers if layer != "builtin"]


async def _sync_knowledge(app: AppContext) -> None:
    """Bring the knowledge index up to date with the files (changed files only)."""
    try:
        report = await app.knowledge.sync()
        log.info(
            "knowledge index: %d added, %d updated, %d removed, %d unchanged in %.2fs",
            report.added,
            report.updated,
            report.removed,
            report.unchanged,
            report.seconds,
        )
        for problem in report.errors:
            log.warning("knowledge file not indexed: %s", problem)
    except Exception:  # search still answers from what the index holds
        log.warning("syncing the knowledge index failed", exc_info=True)
    finally:
        app.knowledge_synced.set()


class _Started:
    """The watcher's ``task_status``: sets ``event`` once the watch is in place."""

    def __init__(self, event: anyio.Event) -> None:
        self.event = event

    def started(self, value: None = None) -> None:
        self.event.set()


async def _watch(app: AppContext) -> None:
    """Run the file watcher for the server's life; if it cannot run, serve without it."""
    from stageflow.agents.watcher import watch
    from stageflow.knowledge.sources import knowledge_roots

    assert app.announcer is not None
    try:
        await watch(
            app.definitions,
            app.definitions.dirs,
            on_reload=app.announcer.on_reload,
            knowledge_dirs=knowledge_roots(app.settings),
            stop=app.stop,
            task_status=_Started(app.watching),
        )
    except Exception:  # e.g. the OS refuses another watch: everything else still works
        log.warning("hot reload is off: the file watcher failed", exc_info=True)
    finally:
        app.watching.set()  # nobody waits for a watcher that will not come


def build_server(
    settings: Settings, *, runner: Runner | None = None, watch_files: bool = True
) -> MCPServer[AppContext]:
    """The stageflow MCP server for one project, with every tool, resource and prompt.

    ``runner`` replaces the runner chosen by ``settings`` (tests pass scripted ones);
    ``watch_files=False`` serves without the file watcher (no hot reload).
    """
    from stageflow.server.mcp_server import StageflowMCP
    from stageflow.server.notify import register_subscriptions

    def register(mcp: MCPServer[Any]) -> None:
        # on first use (a listing or a call), not before ``initialize`` is answered
        from stageflow.prompts.templates import register_prompts
        from stageflow.server.knowledge_resource import register_knowledge_resource
        from stageflow.server.resources import register_resources
        from stageflow.tools import register_tools

        register_tools(mcp)
        register_resources(mcp)
        register_knowledge_resource(mcp)
        register_prompts(mcp, settings, sync=False)  # the lifespan synced them with the files

    # our own bus, so the lifespan can announce run changes outside any request
    bus = InMemorySubscriptionBus()
    logs = ClientLogForwarder()  # WARNING+ from stageflow also reaches clients as MCP logs
    sessions = ClientSessions()  # handshake-era clients, told when the prompt list changes
    requests = FirstRequest()
    mcp: MCPServer[AppContext] = StageflowMCP(
        "stageflow",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=_lifespan(
            settings, runner, bus, logs, sessions, requests, watch_files=watch_files
        ),
        subscriptions=bus,
        log_level="WARNING",
        middleware=[requests, RememberClients(logs), RememberSessions(sessions)],
        register=register,
    )
    register_subscriptions(mcp)
    return mcp
