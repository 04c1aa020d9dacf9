"""Resource-updated notifications for ``stageflow://runs/{run_id}`` in both protocol eras.

A run changes when someone appends to its log: this process (its drivers, or a tool call such as
an approval) or another process on the same ``state.db``. ``RunNotifier`` learns of the first
kind from ``Store.on_append`` at once and of the second by polling SQLite's ``data_version``
(cheap; it moves only for other connections' commits) and then comparing the heads of the runs
that can change. Each changed run is announced

- on the ``subscriptions/listen`` bus (2026-07-28 era clients that listen to the run's URI), and
- with ``notifications/resources/updated`` to every handshake-era session that sent
  ``resources/subscribe`` for the URI (the handler is registered by ``register_subscriptions``).

Notifications say "read it again"; a redundant one is harmless, a missing one is not, so bursts
are coalesced and a failed delivery only drops that session.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from stageflow.store.store import Store
from stageflow.tools.results import run_uri

__all__ = ["POLL_S", "RunNotifier", "register_subscriptions"]

log = logging.getLogger(__name__)

POLL_S = 0.5  # how soon another process's change reaches subscribers
SEND_TIMEOUT_S = 5.0  # a client that stops reading must not stall the others
_ACTIVE = ("running", "waiting", "paused")  # run statuses whose log can still grow


class RunNotifier:
    """Announces run changes to subscribers of the run's resource URI (see module docstring)."""

    def __init__(self, store: Store, bus: SubscriptionBus, *, poll_s: float = POLL_S) -> None:
        self.store = store
        self.bus = bus
        self.poll_s = poll_s
        # uri -> the client connection's key -> a session proxy that can reach that client
        self._sessions: dict[str, dict[object, ServerSession]] = {}
        self._pending: set[str] = set()
        self._wake = anyio.Event()
        self._heads: dict[str, int] = {}  # run id -> last_seq at the previous poll

    # -- handshake-era subscriptions ---------------------------------------------------------

    def subscribe(self, uri: str, session: ServerSession) -> None:
        """Send ``session``'s client a resource-updated notification whenever ``uri`` changes."""
        self._sessions.setdefault(uri, {})[client_key(session)] = session

    def unsubscribe(self, uri: str, session: ServerSession) -> None:
        """Stop notifying ``session``'s client about ``uri``."""
        sessions = self._sessions.get(uri)
        if sessions is not None:
            sessions.pop(client_key(session), None)
            if not sessions:
                del self._sessions[uri]

    # -- change detection --------------------------------------------------------------------

    def changed(self, run_id: str, _holder: str | None = None) -> None:
        """Note that ``run_id`` changed (the ``Store.on_append`` listener); never blocks."""
        self._pending.add(run_id)
        self._wake.set()

    async def run(
        self, stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver notifications until ``stop`` is set (run it in the lifespan's task group).

        With ``await tg.start(notifier.run, stop)`` every change after the call is announced.
        """
        unsubscribe = self.store.on_append(self.changed)
        try:
            version = await self.store.data_version()
            await self._poll_heads(initial=True)
            task_status.started()
            while not stop.is_set():
                with anyio.move_on_after(self.poll_s):
                    await self._wake.wait()
                self._wake = anyio.Event()
                try:
                    now = await self.store.data_version()
                    if now != version:
                        version = now
                        await self._poll_heads()
                except Exception:  # a busy or closing database: try again at the next poll
                    log.warning("run change poll failed", exc_info=True)
                pending, self._pending = self._pending, set()
                for run_id in sorted(pending):
                    try:
                        await self.publish(run_id)
                    except Exception:  # e.g. a custom bus failing: never take the server down
                        log.warning("announcing a change of run %s failed", run_id, exc_info=True)
        finally:
            unsubscribe()

    async def _poll_heads(self, *, initial: bool = False) -> None:
        """Queue every run whose head moved since the last poll (another process wrote)."""
        rows = await self.store.list_runs(limit=-1, statuses=_ACTIVE)  # -1: no limit
        active = {row.run_id: row.last_seq for row in rows}
        heads = dict(active)
        for run_id in self._heads.keys() - active.keys():  # ended since the last poll: rare
            heads[run_id] = (await self.store.get_run(run_id)).last_seq
        if not initial:
            self._pending.update(r for r, seq in heads.items() if self._heads.get(r) != seq)
        self._heads = active

    # -- delivery ----------------------------------------------------------------------------

    async def publish(self, run_id: str) -> None:
        """Tell every subscriber of the run's URI, in both eras, that it changed."""
        await self.publish_uri(run_uri(run_id))

    async def publish_uri(self, uri: str) -> None:
        """Tell every subscriber of ``uri`` (any resource), in both eras, that it changed."""
        await self.bus.publish(ResourceUpdated(uri=uri))
        for session in list(self._sessions.get(uri, {}).values()):
            try:
                with anyio.fail_after(SEND_TIMEOUT_S):
                    await session.send_resource_updated(uri)
            except Exception:  # closed or stuck client: it re-subscribes if it comes back
                log.debug("dropping a subscriber of %s", uri, exc_info=True)
                self.unsubscribe(uri, session)

    def subscribers(self, uri: str) -> int:
        """How many handshake-era sessions subscribe to ``uri`` (for tests and logs)."""
        return len(self._sessions.get(uri, ()))


class _HasNotifier(Protocol):
    @property
    def notifier(self) -> RunNotifier: ...


def register_subscriptions(mcp: MCPServer[Any]) -> None:
    """Serve ``resources/subscribe`` and ``resources/unsubscribe`` for handshake-era clients.

    ``MCPServer`` has no such handlers (2026-07-28 uses ``subscriptions/listen``), so they go on
    the low-level server; with them the handshake advertises ``resources.subscribe``. Any URI is
    accepted, as the spec allows; only run URIs ever fire.
    """

    async def on_subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        _notifier(ctx).subscribe(str(params.uri), ctx.session)
        return EmptyResult()

    async def on_unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        _notifier(ctx).unsubscribe(str(params.uri), ctx.session)
        return EmptyResult()

    low = mcp._lowlevel_server  # mcp 2.3 has no public accessor for the low-level server
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, on_subscribe)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, on_unsubscribe)


def client_key(session: ServerSession) -> object:
    """What identifies the client behind ``session``.

    The SDK builds a new ``ServerSession`` proxy per request (it sends on the connection's own
    channel when used outside the request), so subscribe and unsubscribe arrive on different
    proxies; their connection is the same. mcp 2.3 exposes it on no public attribute.
    """
    return getattr(session, "_connection", session)


def _notifier(ctx: Any) -> RunNotifier:
    app: _HasNotifier = ctx.lifespan_context
    return app.notifier
