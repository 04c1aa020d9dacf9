"""The one place where stageflow's domain errors become MCP errors.

Tools wrap their body in ``with tool_errors():``; resource handlers in ``with resource_errors():``.

==============================  ===============================================================
domain error                    what the MCP client sees
==============================  ===============================================================
``NotFound``                    JSON-RPC invalid params (``-32602``) whose message lists the
                                known names (tools: ``MCPError``; resources:
                                ``ResourceNotFoundError``)
``InvalidState``                tool: ``is_error`` result naming the actual state (e.g. the stage
                                is ``running``, not waiting); resource: ``-32603``
``InvalidArgument``             tool: ``is_error`` result with the validation message
``SpecError`` / ``SpecErrors``  tool: ``is_error`` result listing file, line and problem
any other ``StageflowError``    tool: ``is_error`` result with its message
==============================  ===============================================================

A tool error is a result the model can read and act on (``ToolError``), never a crash: the
server keeps serving. Exceptions that are not ``StageflowError`` are bugs; the SDK reports them
as a bare "Error executing tool" and logs the traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp import MCPError
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import INVALID_PARAMS

from stageflow.errors import InvalidArgument, InvalidState, NotFound, SpecError, StageflowError

__all__ = ["resource_errors", "to_tool_error", "tool_errors"]


def to_tool_error(exc: StageflowError) -> ToolError | MCPError:
    """The error a tool raises for ``exc``; its text is what the model reads.

    An unknown name is a wrong parameter: JSON-RPC invalid params, listing the known names.
    """
    if isinstance(exc, NotFound):
        hint = "" if exc.known else f" (there is no {exc.kind} yet)"
        return MCPError(code=INVALID_PARAMS, message=f"{exc}{hint}")
    if isinstance(exc, InvalidArgument):
        return ToolError(f"invalid argument: {exc}")
    if isinstance(exc, InvalidState):
        return ToolError(f"not possible now: {exc}")
    if isinstance(exc, SpecError):
        return ToolError(f"invalid definition: {exc}")
    return ToolError(str(exc))


@contextmanager
def tool_errors() -> Iterator[None]:
    """Turn any ``StageflowError`` raised inside the block into the MCP error for it."""
    try:
        yield
    except StageflowError as exc:
        raise to_tool_error(exc) from exc


@contextmanager
def resource_errors() -> Iterator[None]:
    """Turn ``NotFound`` into ``ResourceNotFoundError`` and other domain errors into
    ``ResourceError`` (JSON-RPC ``-32602`` / ``-32603`` with the message)."""
    try:
        yield
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    except StageflowError as exc:
        raise ResourceError(str(exc)) from exc
