"""Thin MCP tool adapters: validate the arguments, call the service, return a pydantic model
(structured content with an output schema) plus a short text summary.

``register_tools(mcp)`` adds the contract tools: ``workflow_templates``, ``workflow_start``,
``workflow_status``, ``workflow_approve``, ``workflow_control``, ``workflow_adjust``,
``workflow_artifact``, ``knowledge_lookup``.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

__all__ = ["TOOL_NAMES", "register_tools"]

TOOL_NAMES = (
    "workflow_templates",
    "workflow_start",
    "workflow_status",
    "workflow_approve",
    "workflow_control",
    "workflow_adjust",
    "workflow_artifact",
    "knowledge_lookup",
)

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def register_tools(mcp: MCPServer[Any]) -> None:
    """Register every stageflow tool on ``mcp``. The tool modules are imported here, not with
    the package (``stageflow.tools.results`` is used at start-up; the tools are not)."""
    from stageflow.tools import adjust, artifacts, catalog, knowledge, runs, status

    mcp.add_tool(
        catalog.workflow_templates,
        name="workflow_templates",
        title="List workflow templates and agents",
        description=catalog.DESCRIPTION,
        annotations=_READ,
    )
    mcp.add_tool(
        runs.workflow_start,
        name="workflow_start",
        title="Start a workflow run",
        description=runs.START_DESCRIPTION,
        annotations=_WRITE,
    )
    mcp.add_tool(
        status.workflow_status,
        name="workflow_status",
        title="Show a run's status (or recent runs)",
        description=status.DESCRIPTION,
        annotations=_READ,
    )
    mcp.add_tool(
        runs.workflow_approve,
        name="workflow_approve",
        title="Approve or reject a waiting gate",
        description=runs.APPROVE_DESCRIPTION,
        annotations=_WRITE,
    )
    mcp.add_tool(
        runs.workflow_control,
        name="workflow_control",
        title="Cancel, pause, resume, retry or land a run",
        description=runs.CONTROL_DESCRIPTION,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, open_world_hint=False
        ),
    )
    mcp.add_tool(
        adjust.workflow_adjust,
        name="workflow_adjust",
        title="Adjust a running workflow",
        description=adjust.DESCRIPTION,
        annotations=_WRITE,
    )
    mcp.add_tool(
        artifacts.workflow_artifact,
        name="workflow_artifact",
        title="Read an artifact (paged)",
        description=artifacts.DESCRIPTION,
        annotations=_READ,
    )
    mcp.add_tool(
        knowledge.knowledge_lookup,
        name="knowledge_lookup",
        title="Search the project's knowledge base",
        description=knowledge.DESCRIPTION,
        annotations=_READ,
    )
