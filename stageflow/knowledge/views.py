"""Read models of the knowledge base, shared by the MCP tool, the CLI's ``--json`` and the
subagents' lookup tool, plus their short human renderings.

The models live here, not in ``stageflow.tools``, so the CLI can print them without importing
the MCP SDK. ``knowledge_uri`` builds the ``stageflow://knowledge/{doc_id}`` resource URI: doc
ids contain ``/`` (``guidelines/error-handling``, ``run/<run>/<stage>/<name>``), and the
template's simple ``{doc_id}`` variable matches one path segment only, so the id is
percent-encoded (``/`` as ``%2F``), as RFC 6570 simple expansion does and as run and artifact
URIs already are. Reading the URI decodes it back to the id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import Field

from stageflow.base import Model
from stageflow.knowledge.documents import DOC_TYPES

if TYPE_CHECKING:
    from stageflow.knowledge.documents import Document
    from stageflow.knowledge.index import Hit, IndexReport
    from stageflow.knowledge.vectors import RefreshReport

__all__ = [
    "DOC_TYPES",
    "DocumentView",
    "KnowledgeHit",
    "LookupResult",
    "ReindexView",
    "document_text",
    "document_view",
    "hit_view",
    "knowledge_uri",
    "reindex_view",
    "render_hits",
]

log = logging.getLogger(__name__)

KNOWLEDGE_URI_PREFIX = "stageflow://knowledge/"
SNIPPET_CHARS = 240  # of one hit in the human text
QUERY_ECHO_CHARS = 200  # of the query repeated in results (a 10 kB query is not sent back)


def knowledge_uri(doc_id: str) -> str:
    """The resource URI of a knowledge document (the id percent-encoded, see the docstring)."""
    return KNOWLEDGE_URI_PREFIX + quote(doc_id, safe="")


class KnowledgeHit(Model):
    """One matching section of a knowledge document."""

    id: str = Field(description="document id; read it whole at uri")
    title: str
    type: str = Field(description="guideline, pattern, adr, decision, note or artifact")
    path: str | None = Field(description="project-relative file; null for run artifacts")
    line_start: int = Field(description="first line of the matching section in the file")
    line_end: int
    score: float = Field(description="relevance; higher is better")
    snippet: str = Field(description="the matching text, matches in [brackets]")
    heading: str = Field(description="the section's heading ('' for text before any)")
    tags: list[str] = Field(default_factory=list)
    status: str | None = Field(None, description="ADR/decision status, e.g. accepted")
    run_id: str | None = Field(None, description="the run that produced an artifact")
    stage: str | None = Field(None, description="the stage that produced an artifact")
    uri: str = Field(description="stageflow://knowledge/{doc_id} resource with the full text")
    found_by: list[str] = Field(
        default_factory=lambda: ["bm25"], description="the rankings that found it: bm25, vector"
    )


class LookupResult(Model):
    """What ``knowledge_lookup`` and ``stageflow knowledge search --json`` return."""

    query: str
    types: list[str] = Field(default_factory=list, description="type filter applied")
    tags: list[str] = Field(default_factory=list, description="tag filter applied")
    results: list[KnowledgeHit] = Field(description="best first")
    mode: str = Field("bm25", description="the ranking used: bm25, vector or hybrid")
    note: str | None = Field(None, description="why there are no or fewer results, if known")


class DocumentView(Model):
    """One whole document (``stageflow knowledge show --json``)."""

    id: str
    title: str
    type: str
    tags: list[str] = Field(default_factory=list)
    status: str | None = None
    path: str | None = None
    run_id: str | None = None
    stage: str | None = None
    body_line: int = Field(description="file line where the body starts")
    body: str
    uri: str


class ReindexView(Model):
    """The outcome of a full rebuild (``stageflow knowledge reindex --json``)."""

    added: int
    updated: int
    removed: int
    unchanged: int
    errors: list[str] = Field(default_factory=list)
    seconds: float
    model: str | None = Field(None, description="the embedding model; null without one")
    embedded: int | None = Field(None, description="sections embedded by this rebuild")
    reused: int | None = Field(None, description="section vectors reused from before")


def hit_view(hit: Hit) -> KnowledgeHit:
    """The read model of one search hit."""
    return KnowledgeHit(
        id=hit.doc_id,
        title=hit.title,
        type=hit.type,
        path=hit.path,
        line_start=hit.line_start,
        line_end=hit.line_end,
        score=round(float(hit.score), 4),
        snippet=hit.snippet,
        heading=hit.heading,
        tags=list(hit.tags),
        status=hit.status,
        run_id=hit.run_id,
        stage=hit.stage,
        uri=knowledge_uri(hit.doc_id),
        found_by=list(hit.found_by),
    )


def document_view(doc: Document) -> DocumentView:
    """The read model of one document."""
    return DocumentView(
        id=doc.doc_id,
        title=doc.title,
        type=doc.type,
        tags=list(doc.tags),
        status=doc.status,
        path=doc.path,
        run_id=doc.run_id,
        stage=doc.stage,
        body_line=doc.body_line,
        body=doc.body,
        uri=knowledge_uri(doc.doc_id),
    )


def reindex_view(report: IndexReport, vectors: RefreshReport | None = None) -> ReindexView:
    """The read model of an index report (and of the vector refresh that followed it)."""
    return ReindexView(
        added=report.added,
        updated=report.updated,
        removed=report.removed,
        unchanged=report.unchanged,
        errors=[str(p) for p in report.errors],
        seconds=round(report.seconds + (vectors.seconds if vectors else 0.0), 3),
        model=vectors.model if vectors else None,
        embedded=vectors.embedded if vectors else None,
        reused=vectors.reused if vectors else None,
    )


def _one_line(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def location(hit: KnowledgeHit) -> str:
    """Where a hit is: ``path:12-30``, or ``run r-1 stage design`` for artifacts."""
    if hit.path:
        return f"{hit.path}:{hit.line_start}-{hit.line_end}"
    if hit.run_id:
        return f"run {hit.run_id}, stage {hit.stage}"
    return f"lines {hit.line_start}-{hit.line_end}"


def render_hits(result: LookupResult, *, snippets: bool = True) -> str:
    """A short text listing of the hits, best first."""
    if not result.results:
        filters = [f"types={','.join(result.types)}"] if result.types else []
        filters += [f"tags={','.join(result.tags)}"] if result.tags else []
        where = f" ({'; '.join(filters)})" if filters else ""
        why = f": {result.note}" if result.note else ""
        return f"no knowledge matches {result.query!r}{where}{why}"
    lines = [f"{len(result.results)} result(s) for {result.query!r}:"]
    if result.note:
        lines.append(f"note: {result.note}")
    for n, hit in enumerate(result.results, 1):
        extra = f", {hit.status}" if hit.status else ""
        heading = f" > {hit.heading}" if hit.heading and hit.heading != hit.title else ""
        found = f" found by {'+'.join(hit.found_by)}" if result.mode != "bm25" else ""
        lines.append(
            f"{n}. {hit.title}{heading} [{hit.type}{extra}] {location(hit)} (id: {hit.id}){found}"
        )
        if snippets and hit.snippet.strip():
            lines.append(f"   {_one_line(hit.snippet)}")
    return "\n".join(lines)


def lookup_result(
    query: str,
    hits: Sequence[Hit],
    *,
    types: Sequence[str] = (),
    tags: Sequence[str] = (),
    note: str | None = None,
    mode: str = "bm25",
) -> LookupResult:
    """The result model for ``hits`` found for ``query`` in ``mode``."""
    return LookupResult(
        query=_one_line(query, QUERY_ECHO_CHARS),
        types=list(types),
        tags=list(tags),
        results=[hit_view(h) for h in hits],
        mode=mode,
        note=note,
    )


def document_text(doc: Document, project: Path) -> str:
    """The document's file as written (front matter included, so hit line ranges point into
    it), or, for run artifacts and files gone since indexing, its indexed text under a header.

    Only files inside ``project`` are re-read.
    """
    if doc.path:
        file = (project / doc.path).resolve()
        try:
            if file.is_relative_to(project.resolve()):
                return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # deleted or changed since indexed
            log.info("cannot re-read knowledge file %s: %s", file, exc)
    where = f"run {doc.run_id}, stage {doc.stage}" if doc.run_id else doc.type
    return f"<!-- {doc.doc_id}: {doc.title} ({where}) -->\n{doc.body}"
