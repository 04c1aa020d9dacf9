"""``knowledge_lookup``: search the project's knowledge base (guidelines, patterns, ADRs,
decisions, notes, past runs' artifacts)."""

from __future__ import annotations

from typing import Annotated, Protocol, cast

from mcp.types import CallToolResult
from pydantic import Field

from stageflow.knowledge.documents import DocType
from stageflow.knowledge.hybrid import SearchMode
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.lookup import DEFAULT_LIMIT, MAX_LIMIT, lookup
from stageflow.knowledge.views import LookupResult, render_hits
from stageflow.tools.deps import ToolContext
from stageflow.tools.errors import tool_errors
from stageflow.tools.results import tool_result

# longer queries are cut, not refused: the words that matter come first
MAX_QUERY_CHARS = 16_000

DESCRIPTION = f"""\
Search this project's knowledge base: coding guidelines, patterns, architecture decision
records (ADRs, with their status), decisions recorded by earlier workflow runs, notes, and the
artifacts of past runs (designs, reviews, test reports). Use it to answer "how do we do X
here", "why did we choose Y", or "how did we solve Z last time" before designing or changing
something.

`query` is plain words (any text is safe: quotes, operators and punctuation are not search
syntax). `mode`: `bm25` ranks documents matching more of the words higher, title and tag
matches above body matches; `vector` ranks by meaning, for questions worded unlike the
documents; `hybrid` fuses both (the default when embeddings are available). Filter with
`types` and `tags` (documents with any of the tags); with a filter, a query of no words lists
what it selects (e.g. every ADR). `limit`: 1-{MAX_LIMIT}, default {DEFAULT_LIMIT}.

Returns ranked sections, best first: id, title, type, file path with line range, score, a
snippet with matches in [brackets], heading, tags, ADR/decision status, the rankings that found
it (`found_by`), and for artifacts the run and stage. Read a whole document from its `uri`
(resource stageflow://knowledge/{{doc_id}}, the id percent-encoded) or open the file at
`path`. Stages of a workflow receive relevant knowledge automatically; this tool is for you
and the human."""


class _HasKnowledge(Protocol):
    @property
    def knowledge(self) -> KnowledgeIndex: ...

    async def knowledge_ready(self) -> None: ...


async def knowledge_lookup(
    ctx: ToolContext,
    query: Annotated[str, Field(description="what to look for, in plain words")],
    types: Annotated[list[DocType] | None, Field(description="only these document types")] = None,
    tags: Annotated[
        list[str] | None, Field(description="only documents having any of these tags")
    ] = None,
    limit: Annotated[
        int, Field(description="how many sections to return", ge=1, le=MAX_LIMIT)
    ] = DEFAULT_LIMIT,
    mode: Annotated[
        SearchMode | None,
        Field(description="bm25, vector or hybrid (default: hybrid if available)"),
    ] = None,
) -> Annotated[CallToolResult, LookupResult]:
    """Ranked knowledge sections for ``query``."""
    app = cast(_HasKnowledge, ctx.request_context.lifespan_context)
    await app.knowledge_ready()
    with tool_errors():
        result = await lookup(
            app.knowledge,
            query[:MAX_QUERY_CHARS],
            types=types or (),
            tags=tags or (),
            limit=limit,
            mode=mode,
        )
    return tool_result(result, render_hits(result))
