"""Hot reload on the MCP side: what the server does after the watcher swapped the definitions.

``agents.watcher.watch`` re-parses the changed agent, template and knowledge files and swaps
``LiveDefinitions`` atomically (the service and scheduler read from it, so the next call and the
next attempt see the new version); then ``ReloadAnnouncer.on_reload`` tells the world:

- the template prompts are synced with the live catalog; if that changed them, every client
  hears ``notifications/prompts/list_changed``: handshake-era sessions directly (they are
  remembered by the ``RememberSessions`` middleware), 2026-07-28 clients on their
  ``subscriptions/listen`` streams;
- ``stageflow://templates/{name}`` and ``stageflow://agents/{name}`` of every changed or removed
  definition get a resource-updated notification (subscribers of both eras);
- each new load error (a broken file; its last good version stays in use) is logged as a
  warning, which ``ClientLogForwarder`` also sends to handshake-era clients as an MCP log
  message; each problem once (the report lists only problems new with this reload);
- changed knowledge files are re-indexed incrementally (``KnowledgeIndex.update_paths``), and
  subscribers of their ``stageflow://knowledge/{doc_id}`` hear that they changed.

A failure in any step is logged and never stops the watcher or the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import PromptsListChanged, SubscriptionBus

from stageflow.agents.live import LiveDefinitions, ReloadReport
from stageflow.config import Settings
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.views import knowledge_uri
from stageflow.prompts.templates import sync_prompts
from stageflow.server.notify import RunNotifier, client_key
from stageflow.tools.results import agent_uri, template_uri

__all__ = ["ClientSessions", "ReloadAnnouncer", "RememberSessions"]

log = logging.getLogger(__name__)

STATELESS_ERA = "2026-07-28"
SEND_TIMEOUT_S = 5.0


class ClientSessions:
    """The handshake-era client connections of this server (one session proxy each)."""

    def __init__(self) -> None:
        self._sessions: dict[object, ServerSession] = {}

    def remember(self, session: ServerSession) -> None:
        self._sessions[client_key(session)] = session

    def __len__(self) -> int:
        return len(self._sessions)

    async def send_prompt_list_changed(self) -> None:
        """Tell every remembered client that the prompt list changed; forget dead ones."""
        for key, session in list(self._sessions.items()):
            try:
                with anyio.fail_after(SEND_TIMEOUT_S):
                    await session.send_prompt_list_changed()
            except Exception:  # the client went away: it lists the prompts again on return
                log.debug("dropping a client session", exc_info=True)
                self._sessions.pop(key, None)


class RememberSessions:
    """Middleware: note every handshake-era client so it can hear about list changes."""

    def __init__(self, sessions: ClientSessions) -> None:
        self.sessions = sessions

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.request_id is not None and ctx.protocol_version != STATELESS_ERA:
            self.sessions.remember(ctx.session)
        return result


class ReloadAnnouncer:
    """Runs after each reload (see the module docstring)."""

    def __init__(
        self,
        mcp: MCPServer[Any],
        settings: Settings,
        live: LiveDefinitions,
        index: KnowledgeIndex,
        notifier: RunNotifier,
        bus: SubscriptionBus,
        sessions: ClientSessions,
    ) -> None:
        self.mcp = mcp
        self.settings = settings
        self.live = live
        self.index = index
        self.notifier = notifier
        self.bus = bus
        self.sessions = sessions

    async def on_reload(self, report: ReloadReport) -> None:
        """Announce one reload; never raises."""
        try:
            await self._knowledge(report.knowledge_paths)
            self._errors(report)
            await self._prompts()
            await self._resources(report)
        except Exception:  # announcing is best effort; the swap itself already happened
            log.warning("announcing a reload failed", exc_info=True)

    async def _knowledge(self, changed: Iterable[Path]) -> None:
        paths = list(changed)
        if not paths:
            return
        try:
            report = await self.index.update_paths(paths)
        except Exception:
            log.warning("re-indexing %d knowledge file(s) failed", len(paths), exc_info=True)
            return
        for problem in report.errors:
            log.warning("knowledge file not indexed: %s", problem)
        for doc_id in dict.fromkeys((*report.changed_ids, *report.removed_ids)):
            await self.notifier.publish_uri(knowledge_uri(doc_id))

    def _errors(self, report: ReloadReport) -> None:
        # the report holds only problems that appeared with this reload: each is said once
        for problem in report.errors:
            log.warning("definition file failed to load (its last good version stays): %s", problem)

    async def _prompts(self) -> None:
        changed = sync_prompts(self.mcp, self.settings, self.live.catalog)
        if not changed:
            return
        await self.sessions.send_prompt_list_changed()
        await self.bus.publish(PromptsListChanged())

    async def _resources(self, report: ReloadReport) -> None:
        uris = [template_uri(n) for n in (*report.templates_changed, *report.templates_removed)]
        uris += [agent_uri(n) for n in (*report.agents_changed, *report.agents_removed)]
        for uri in dict.fromkeys(uris):
            await self.notifier.publish_uri(uri)
