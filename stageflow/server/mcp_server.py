"""``StageflowMCP``: ``MCPServer`` with the tool-error conventions of the MCP spec (2025-11-25,
SEP-1303) applied to every call.

- An unknown tool name is a protocol error (JSON-RPC invalid params, ``-32602``) naming the
  tools there are; the SDK would answer with an ``is_error`` result.
- Arguments that fail a tool's input schema are a tool execution error whose text is one line
  per argument naming the allowed values (``stageflow.tools.errors.argument_error``), instead of
  pydantic's listing with documentation URLs.
- A ``ToolError`` a tool raises reaches the model as its own message, without the SDK's
  ``Error executing tool <name>:`` prefix.
"""

from __future__ import annotations

from typing import Any, TypeVar

from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import INVALID_PARAMS, CallToolResult, InputRequiredResult
from pydantic import ValidationError

from stageflow.tools.errors import argument_error

__all__ = ["StageflowMCP"]

LifespanT = TypeVar("LifespanT")


class StageflowMCP(MCPServer[LifespanT]):
    """The stageflow server's ``MCPServer``."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[LifespanT, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        known = sorted(tool.name for tool in await self.list_tools())
        if name not in known:
            raise MCPError(
                code=INVALID_PARAMS, message=f"unknown tool '{name}'; tools: {', '.join(known)}"
            )
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(argument_error(name, exc.__cause__)) from exc.__cause__
            text = str(exc).removeprefix(f"Error executing tool {name}: ")
            raise ToolError(text) from exc
