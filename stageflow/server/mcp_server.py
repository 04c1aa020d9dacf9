"""``StageflowMCP``: ``MCPServer`` with the tool-error conventions of the MCP spec (2025-11-25,
SEP-1303) applied to every call.

- An unknown tool name is a protocol error (JSON-RPC invalid params, ``-32602``) naming the
  tools there are; the SDK would answer with an ``is_error`` result.
- Arguments that fail a tool's input schema are a tool execution error whose text is one line
  per argument naming the allowed values (``stageflow.tools.errors.argument_error``), instead of
  pydantic's listing with documentation URLs.
- A ``ToolError`` a tool raises reaches the model as its own message, without the SDK's
  ``Error executing tool <name>:`` prefix.

Tools, resources and prompts are registered on first use (a listing, a call, a read), not
when the server is built: building their schemas is most of what stageflow adds to the time a
stdio client waits for ``initialize``, which needs none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mcp import MCPError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
)
from mcp.types import Prompt as MCPPrompt
from mcp.types import Resource as MCPResource
from mcp.types import ResourceTemplate as MCPResourceTemplate
from mcp.types import Tool as MCPTool
from pydantic import ValidationError

from stageflow.tools.errors import argument_error

__all__ = ["StageflowMCP"]

LifespanT = TypeVar("LifespanT")


class StageflowMCP(MCPServer[LifespanT]):
    """The stageflow server's ``MCPServer``; ``register`` adds its tools, resources and
    prompts, once, before the first request that needs them."""

    def __init__(
        self, *args: Any, register: Callable[[MCPServer[Any]], None] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._register = register
        #: the lifespan's context while it runs (the dashboard served next to /mcp reads it)
        self.app_context: Any | None = None

    def ensure_registered(self) -> None:
        """Register the tools, resources and prompts now if they are not yet."""
        register, self._register = self._register, None
        if register is not None:
            register(self)

    async def list_tools(self) -> list[MCPTool]:
        self.ensure_registered()
        return await super().list_tools()

    async def list_resources(self) -> list[MCPResource]:
        self.ensure_registered()
        return await super().list_resources()

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        self.ensure_registered()
        return await super().list_resource_templates()

    async def list_prompts(self) -> list[MCPPrompt]:
        self.ensure_registered()
        return await super().list_prompts()

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> GetPromptResult | InputRequiredResult:
        if self._register is not None:
            self.ensure_registered()
            # registering may have wrapped get_prompt on the instance (unknown names listed)
            return await self.get_prompt(name, arguments, context)
        return await super().get_prompt(name, arguments, context)

    async def read_resource(
        self, uri: Any, context: Context[LifespanT, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        self.ensure_registered()
        return await super().read_resource(uri, context)

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
