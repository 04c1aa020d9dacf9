"""``knowledge_lookup`` for subagents: an ``ExtraTool`` of the API runner's tool-use loop.

The stage already receives the top sections for its task (``KnowledgeSource``); this tool lets
the agent look further: search with its own words (ranked snippets with ids), or read one
document whole by id. Bad arguments come back as ``InvalidArgument`` (the loop shows the model
an error result it can correct); nothing the model sends can raise anything else.
"""

from __future__ import annotations

import logging
from typing import Any

from stageflow.errors import InvalidArgument, NotFound
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.lookup import DEFAULT_LIMIT, MAX_LIMIT, lookup
from stageflow.knowledge.views import DOC_TYPES, render_hits
from stageflow.subagents.tool_loop import ExtraTool

__all__ = ["TOOL_NAME", "knowledge_lookup_tool"]

log = logging.getLogger(__name__)

TOOL_NAME = "knowledge_lookup"
MAX_DOC_CHARS = 24_000  # one document read: about 6k tokens at most
MAX_QUERY_CHARS = 2_000

DESCRIPTION = f"""\
Search this project's knowledge base: coding guidelines, patterns, architecture decision
records (ADRs), recorded decisions, notes, and artifacts of earlier workflow runs. Use it before
deciding how to do something the project may already have a rule or a precedent for, e.g.
"error handling", "how are migrations written", "why SQLite".

Pass `query` (plain words; no special syntax). Optional `types` ({", ".join(DOC_TYPES)}),
`tags`, `limit` (1-{MAX_LIMIT}, default {DEFAULT_LIMIT}). Returns ranked hits: title, type, file
and line range, id, and a snippet with matches in [brackets]. To read one document in full,
call again with `doc_id` set to a hit's id (query is then ignored)."""

DEFINITION: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": DESCRIPTION,
    "input_schema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to look for, in plain words"},
            "types": {
                "type": "array",
                "items": {"type": "string", "enum": list(DOC_TYPES)},
                "description": "only these document types",
            },
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "description": "only documents with any of these tags",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "description": f"how many hits (default {DEFAULT_LIMIT})",
            },
            "doc_id": {"type": "string", "description": "read this document whole instead"},
        },
    },
}


def _strings(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if value is None:
        return []
    if isinstance(value, str):  # models sometimes send one value for a list
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"`{key}` must be a list of strings")


def _limit(args: dict[str, Any]) -> int:
    value = args.get("limit", DEFAULT_LIMIT)
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidArgument(f"`limit` must be an integer between 1 and {MAX_LIMIT}")
    return int(value)


async def _read(index: KnowledgeIndex, doc_id: str) -> str:
    try:
        doc = await index.get(doc_id)
    except NotFound as exc:
        raise InvalidArgument(str(exc)) from exc
    body = doc.body
    cut = ""
    if len(body) > MAX_DOC_CHARS:
        body = body[:MAX_DOC_CHARS]
        cut = f"\n[... truncated at {MAX_DOC_CHARS} characters]"
    where = doc.path or (f"run {doc.run_id}, stage {doc.stage}" if doc.run_id else "")
    status = f", {doc.status}" if doc.status else ""
    return f"# {doc.title} [{doc.type}{status}] {where} (id: {doc.doc_id})\n\n{body}{cut}"


def knowledge_lookup_tool(index: KnowledgeIndex) -> ExtraTool:
    """The subagent tool over ``index`` (see the module docstring)."""

    async def call(args: dict[str, Any]) -> str:
        doc_id = args.get("doc_id")
        if doc_id is not None and not isinstance(doc_id, str):
            raise InvalidArgument("`doc_id` must be a string")
        try:
            if doc_id and doc_id.strip():
                return await _read(index, doc_id.strip())
            query = args.get("query")
            if not isinstance(query, str) or not query.strip():
                raise InvalidArgument("pass `query` (plain words) or `doc_id`")
            result = await lookup(
                index,
                query[:MAX_QUERY_CHARS],
                types=_strings(args, "types"),
                tags=_strings(args, "tags"),
                limit=_limit(args),
            )
        except InvalidArgument:
            raise
        except Exception as exc:  # a broken index must not end the attempt: the model goes on
            log.warning("knowledge_lookup failed", exc_info=True)
            raise InvalidArgument(f"the knowledge base is not available now ({exc})") from exc
        text = render_hits(result)
        if result.results:
            text += "\nRead one whole: knowledge_lookup with doc_id=<id>."
        return text

    return ExtraTool(definition=DEFINITION, call=call)
