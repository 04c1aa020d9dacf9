"""The one place where stageflow's domain errors become MCP errors.

Tools wrap their body in ``with tool_errors():``; resource handlers in ``with resource_errors():``.
Per the MCP spec (2025-11-25, SEP-1303) a mistake the model can correct is a *tool execution
error*: an ``is_error`` result whose text says what was wrong and what is valid, so the model
can try again. Protocol errors (JSON-RPC) are kept for an unknown tool name and malformed
requests (``stageflow.server.mcp_server``).

==============================  ===============================================================
domain error                    what the MCP client sees
==============================  ===============================================================
``NotFound``                    tool: ``is_error`` result naming the unknown value, the known
                                names and where to list them; resource: JSON-RPC invalid params
                                (``-32602``, ``ResourceNotFoundError``)
``InvalidState``                tool: ``is_error`` result naming the actual state (e.g. the stage
                                is ``running``, not waiting); resource: ``-32603``
``InvalidArgument``             tool: ``is_error`` result with the validation message
``SpecError`` / ``SpecErrors``  tool: ``is_error`` result listing file, line and problem
any other ``StageflowError``    tool: ``is_error`` result with its message
arguments failing the schema    tool: ``is_error`` result, one line per argument naming the
                                allowed values (``argument_error``), not pydantic's listing
==============================  ===============================================================

A tool error is a result the model can read and act on (``ToolError``), never a crash: the
server keeps serving. Exceptions that are not ``StageflowError`` are bugs; the SDK reports them
as a bare "Error executing tool" and logs the traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from pydantic import ValidationError

from stageflow.errors import InvalidArgument, InvalidState, NotFound, SpecError, StageflowError

__all__ = ["argument_error", "resource_errors", "to_tool_error", "tool_errors"]

# where the model can list the valid names of each kind
_WHERE = {
    "run": "workflow_status() without run_id lists recent runs",
    "template": "workflow_templates lists them",
    "agent": "workflow_templates lists them",
    "artifact": "workflow_status(run_id) lists each stage's artifacts",
}


def to_tool_error(exc: StageflowError) -> ToolError:
    """The error a tool raises for ``exc``; its text is what the model reads."""
    if isinstance(exc, NotFound):
        hint = "" if exc.known else f" (there is no {exc.kind} yet)"
        where = _WHERE.get(exc.kind)
        return ToolError(f"{exc}{hint}" + (f"; {where}" if where else ""))
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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def argument_error(tool: str, exc: ValidationError) -> str:
    """One line per argument that failed ``tool``'s input schema, e.g.
    ``decision='aprove' is not allowed: use 'approve' or 'reject'``."""
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        kind = err["type"]
        if kind == "missing":
            parts.append(f"{loc} is required")
        elif kind in ("literal_error", "enum"):
            expected = (err.get("ctx") or {}).get("expected", "")
            parts.append(f"{loc}={_shown(err['input'])} is not allowed: use {expected}")
        else:
            msg = err["msg"][:1].lower() + err["msg"][1:]
            parts.append(f"{loc}={_shown(err['input'])}: {msg}")
    return f"invalid arguments for {tool}: " + "; ".join(parts)
