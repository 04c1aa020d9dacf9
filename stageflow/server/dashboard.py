"""The dashboard next to ``/mcp`` in ``serve --transport http``: it serves the running
server's own ``Service`` and store (from the lifespan), and a decision taken there is driven on
by the server's scheduler at once (``AppContext.start_driving``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.mcpserver import MCPServer

from stageflow.dashboard.app import DashboardDeps, dashboard_app
from stageflow.dashboard.guard import DashboardGuard
from stageflow.errors import InvalidState

__all__ = ["served_dashboard"]


def served_dashboard(
    mcp: MCPServer[Any], *, token: str, host: str, allowed_hosts: Iterable[str] = ()
) -> DashboardGuard:
    """The dashboard over ``mcp``'s lifespan context (a 503 page until the server started)."""

    def deps() -> DashboardDeps:
        ctx = getattr(mcp, "app_context", None)
        if ctx is None:
            raise InvalidState("the server is starting or stopping; reload in a moment")
        return DashboardDeps(service=ctx.service, store=ctx.store, on_decided=ctx.start_driving)

    return dashboard_app(deps, token=token, host=host, allowed_hosts=allowed_hosts)
