"""``build_server``: the stageflow MCP server and its lifespan.

The lifespan opens the project's store, builds the runner, scheduler and service, and runs
``Scheduler.serve`` in a background task group for the server's whole life, so workflows keep
running between tool calls (and runs left by a dead process are adopted), next to a
``RunNotifier`` that tells resource subscribers when a run changes. Tools reach these objects
through ``ctx.request_context.lifespan_context`` (an ``AppContext``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus

from stageflow import __version__
from stageflow.config import Settings
from stageflow.engine.runner import Runner
from stageflow.engine.scheduler import RunBusy, Scheduler
from stageflow.engine.service import Service
from stageflow.server.client_log import ClientLogForwarder, RememberClients
from stageflow.server.notify import RunNotifier
from stageflow.store.store import Store

__all__ = ["INSTRUCTIONS", "AppContext", "build_server"]

log = logging.getLogger(__name__)

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
workflow_control cancels, pauses, resumes or retries a run.
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
    stop: anyio.Event = field(default_factory=anyio.Event)
    task_group: TaskGroup | None = None

    def start_driving(self, run_id: str) -> None:
        """Execute ``run_id`` in the background now (not at the scheduler's next poll).

        Harmless when this process already drives the run or another live process does.
        """
        if self.task_group is None or self.stop.is_set():
            return
        self.task_group.start_soon(self._drive, run_id)

    async def _drive(self, run_id: str) -> None:
        try:
            await self.scheduler.drive(run_id, until="terminal", stop=self.stop)
        except RunBusy:
            return  # already driven, here or by another live process
        except Exception:  # one broken run must not take the server down
            log.exception("run %s: driver failed", run_id)


def _lifespan(
    settings: Settings, runner: Runner | None, bus: SubscriptionBus, logs: ClientLogForwarder
) -> Callable[[MCPServer[AppContext]], AbstractAsyncContextManager[AppContext]]:
    @asynccontextmanager
    async def lifespan(server: MCPServer[AppContext]) -> AsyncIterator[AppContext]:
        from stageflow.subagents.select import describe_runner, make_runner
        from stageflow.subagents.workspace_view import workspace_probe

        store = await Store.open(settings.db_path)
        try:
            scheduler = Scheduler(
                store,
                runner if runner is not None else make_runner(settings),
                max_concurrent_agents=settings.max_concurrent_agents,
                lease_seconds=settings.lease_seconds,
            )
            label = describe_runner(settings)
            app = AppContext(
                settings=settings,
                store=store,
                service=Service(
                    settings,
                    store,
                    runner_label=label,
                    workspace_probe=workspace_probe(settings.project),
                ),
                scheduler=scheduler,
                runner_label=label,
                notifier=RunNotifier(store, bus),
            )
            try:
                async with anyio.create_task_group() as tg:
                    app.task_group = tg
                    tg.start_soon(scheduler.serve, app.stop)
                    await tg.start(app.notifier.run, app.stop)
                    await tg.start(logs.run, app.stop)
                    package_log = logging.getLogger("stageflow")
                    package_log.addHandler(logs)
                    try:
                        yield app
                    finally:
                        package_log.removeHandler(logs)
                        # Drivers stop where they are; every transition is already committed,
                        # and the next process to open the project resumes the runs.
                        app.stop.set()
                        tg.cancel_scope.cancel()
            finally:
                scheduler.close()
        finally:
            await store.close()

    return lifespan


def build_server(settings: Settings, *, runner: Runner | None = None) -> MCPServer[AppContext]:
    """The stageflow MCP server for one project, with every tool, resource and prompt.

    ``runner`` replaces the runner chosen by ``settings`` (tests pass scripted ones).
    """
    from stageflow.prompts.templates import register_prompts
    from stageflow.server.notify import register_subscriptions
    from stageflow.server.resources import register_resources
    from stageflow.tools import register_tools

    # our own bus, so the lifespan can announce run changes outside any request
    bus = InMemorySubscriptionBus()
    logs = ClientLogForwarder()  # WARNING+ from stageflow also reaches clients as MCP logs
    mcp: MCPServer[AppContext] = MCPServer(
        "stageflow",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=_lifespan(settings, runner, bus, logs),
        subscriptions=bus,
        log_level="WARNING",
        middleware=[RememberClients(logs)],
    )
    register_tools(mcp)
    register_resources(mcp)
    register_subscriptions(mcp)
    register_prompts(mcp, settings)
    return mcp
