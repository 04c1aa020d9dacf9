"""The ``stageflow://knowledge/{doc_id}`` resource: one knowledge document, whole.

Doc ids contain ``/`` (``guidelines/error-handling``, ``run/<run>/<stage>/<name>``). The
template's ``{doc_id}`` is an RFC 6570 simple variable, which matches one path segment, so the
id travels percent-encoded: ``stageflow://knowledge/guidelines%2Ferror-handling``. That is what
RFC 6570 expansion of the template produces, what ``knowledge_lookup`` returns in each hit's
``uri``, and the same rule the run and artifact URIs follow; the SDK decodes it back to the id.
A URI with a literal ``/`` after ``knowledge/`` matches no template (-32602).

A file document is returned as the file is written (front matter included), so the line ranges
in search hits point into it; a run artifact (no file) is returned as indexed, with a short
header naming its run and stage.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from mcp.server.mcpserver import Context, MCPServer

from stageflow.config import Settings
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.views import document_text
from stageflow.tools.errors import resource_errors

__all__ = ["KNOWLEDGE_URI", "register_knowledge_resource"]

KNOWLEDGE_URI = "stageflow://knowledge/{doc_id}"


class _HasKnowledge(Protocol):
    @property
    def knowledge(self) -> KnowledgeIndex: ...

    @property
    def settings(self) -> Settings: ...

    async def knowledge_ready(self) -> None: ...


def register_knowledge_resource(mcp: MCPServer[Any]) -> None:
    """Register the knowledge document template on ``mcp`` (see the module docstring)."""

    @mcp.resource(
        KNOWLEDGE_URI,
        name="knowledge",
        title="Knowledge document",
        description=(
            "One document of the project's knowledge base (guideline, pattern, ADR, decision, "
            "note, or a past run's artifact) as Markdown. doc_id is percent-encoded "
            "('/' as %2F); knowledge_lookup returns each hit's uri."
        ),
        mime_type="text/markdown",
    )
    async def read_knowledge(doc_id: str, ctx: Context[Any, Any]) -> str:
        app = cast(_HasKnowledge, ctx.request_context.lifespan_context)
        await app.knowledge_ready()
        with resource_errors():
            doc = await app.knowledge.get(doc_id)
        return document_text(doc, app.settings.project)
