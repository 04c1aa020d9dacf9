"""What the tools need from the server, as a protocol (tools never import ``stageflow.server.app``:
nothing imports upward). ``stageflow.server.app.AppContext`` satisfies it."""

from __future__ import annotations

from typing import Any, Protocol, cast

from mcp.server.mcpserver import Context

from stageflow.config import Settings
from stageflow.engine.service import Service
from stageflow.store.store import Store

#: How tool functions annotate the injected context (resolvable at runtime: the SDK reads it).
ToolContext = Context[Any, Any]


class ToolDeps(Protocol):
    """The server-lifetime objects a tool uses."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def service(self) -> Service: ...

    @property
    def runner_label(self) -> str: ...

    def start_driving(self, run_id: str) -> None: ...


def deps(ctx: ToolContext) -> ToolDeps:
    """The lifespan objects of the server handling this call."""
    return cast(ToolDeps, ctx.request_context.lifespan_context)
