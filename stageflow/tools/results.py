"""How a tool answers: structured content (the model) plus a short text a human can read."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent
from pydantic import BaseModel


def run_uri(run_id: str) -> str:
    """The resource URI of a run's dashboard."""
    return f"stageflow://runs/{quote(run_id, safe='')}"


def template_uri(name: str) -> str:
    """The resource URI of a workflow template."""
    return f"stageflow://templates/{quote(name, safe='')}"


def agent_uri(name: str) -> str:
    """The resource URI of an agent definition."""
    return f"stageflow://agents/{quote(name, safe='')}"


def artifact_uri(run_id: str, stage: str, name: str) -> str:
    """The resource URI of an artifact's latest version."""
    parts = (quote(p, safe="") for p in (stage, name))
    return f"{run_uri(run_id)}/artifacts/{'/'.join(parts)}"


def artifact_link(run_id: str, stage: str, name: str, size: int) -> ResourceLink:
    """A link the client can read (``resources/read``) instead of receiving the text inline."""
    return ResourceLink(
        type="resource_link",
        uri=artifact_uri(run_id, stage, name),
        name=f"{stage}/{name}",
        mime_type="text/markdown",
        size=size,
    )


def tool_result(
    model: BaseModel, summary: str, links: Sequence[ResourceLink] = ()
) -> CallToolResult:
    """``summary`` as text content (plus ``links``), ``model`` as the structured content."""
    content: list[ContentBlock] = [TextContent(type="text", text=summary), *links]
    return CallToolResult(content=content, structured_content=model.model_dump(mode="json"))
