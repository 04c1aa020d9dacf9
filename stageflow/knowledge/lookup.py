"""One search entry for every front end (MCP tool, CLI, subagent tool): check the filters, run
the search, and say why nothing was found when the query has nothing searchable.

User text never reaches FTS5 as syntax (``to_fts_query`` quotes every token), so any query,
however hostile, yields results or none; only bad filters (an unknown type, a limit out of
range) are the caller's mistake (``InvalidArgument``).
"""

from __future__ import annotations

from collections.abc import Sequence

from stageflow.errors import InvalidArgument
from stageflow.knowledge.hybrid import SearchMode
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.query import to_fts_query
from stageflow.knowledge.views import DOC_TYPES, LookupResult, lookup_result

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "lookup"]

DEFAULT_LIMIT = 8
MAX_LIMIT = 50
MAX_TAGS = 20


def check_filters(types: Sequence[str], tags: Sequence[str], limit: int) -> None:
    """Raise ``InvalidArgument`` for an unknown type, too many tags or a limit out of range."""
    unknown = sorted({t for t in types if t not in DOC_TYPES})
    if unknown:
        raise InvalidArgument(
            f"unknown knowledge type(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(DOC_TYPES)}"
        )
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags, got {len(tags)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")


async def lookup(
    index: KnowledgeIndex,
    query: str,
    *,
    types: Sequence[str] = (),
    tags: Sequence[str] = (),
    limit: int = DEFAULT_LIMIT,
    mode: SearchMode | None = None,
) -> LookupResult:
    """Search the knowledge base in ``mode`` (None: hybrid when an embedder is available, else
    BM25); best hits first. Asking for ``vector``/``hybrid`` without an embedder raises
    ``InvalidArgument`` saying how to get one."""
    types = list(dict.fromkeys(types))
    tags = list(dict.fromkeys(t for t in tags if t.strip()))
    check_filters(types, tags, limit)
    if to_fts_query(query) is None and not (types or tags):
        # with filters, the index lists the documents they select instead
        return lookup_result(
            query,
            [],
            types=types,
            tags=tags,
            note="the query has no searchable words",
            mode=mode or index.default_mode,
        )
    found = await index.find(query, types=types, tags=tags, limit=limit, mode=mode)
    note = found.note
    if not found.hits:
        note = "no document matches; try fewer or other words, or no filters"
    return lookup_result(query, found.hits, types=types, tags=tags, note=note, mode=found.mode)
