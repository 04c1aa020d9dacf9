"""Knowledge search: BM25 over the FTS5 index, dense vectors, or both fused (``hybrid``).

BM25 ranks sections over five columns weighted by ``Weights`` (title above tags, type/status
words, headings and body; tuned on the retrieval set in ``tests/knowledge``), then ranks
documents by their best section plus ``SECTION_BONUS`` of their other matching ones, and returns
the best section(s) of each document. On a large index, common query words stop widening the
candidate set (``focused_query``), which keeps a query at 100k sections in milliseconds;
snippets are made only for the sections returned.

``vector`` ranks documents by embedding similarity (``knowledge/vectors.py``) and ``hybrid``
fuses both rankings (``knowledge/hybrid.py``). The embedder is loaded on the first search that
needs it; ``hybrid`` is the default when one is configured and installed.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from stageflow.config import Settings
from stageflow.errors import InvalidArgument
from stageflow.knowledge.embedders import EmbedderUnavailable, embedder_spec, load_embedder
from stageflow.knowledge.hybrid import (
    DEPTH,
    SEARCH_MODES,
    Candidate,
    SearchMode,
    coverage,
    dense_candidates,
    rrf_k,
)
from stageflow.knowledge.query import focused_query, query_groups
from stageflow.store.knowledge import KnowledgeHitRow, KnowledgeStore

if TYPE_CHECKING:
    from stageflow.knowledge.vectors import RefreshReport, VectorIndex

__all__ = ["DEFAULT_WEIGHTS", "MAX_LIMIT", "Found", "Hit", "Searcher", "Weights"]

log = logging.getLogger(__name__)

MAX_LIMIT = 100
MIN_FETCH = 50  # sections read per search at least: enough to see each document's other hits
MAX_FETCH = 6400
#: Sections the rare terms of a query may match before its common terms stop widening the
#: candidate set (see ``focused_query``): bounds the rows BM25 must score.
FOCUS_BUDGET = 2000
#: Share of the score of each further matching section added to its document's score.
SECTION_BONUS = 0.1
MAX_FILTERS = 32


@dataclass(frozen=True)
class Weights:
    """BM25 weight of each FTS column (``meta`` holds type, status and an artifact's task)."""

    title: float = 12.0
    tags: float = 3.0
    meta: float = 3.0
    heading: float = 4.0
    body: float = 1.0

    def rank(self) -> str:
        """The FTS5 ranking function for ``rank MATCH``."""
        w = (self.title, self.tags, self.meta, self.heading, self.body)
        return "bm25(" + ", ".join(f"{float(x):.3f}" for x in w) + ")"


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Hit:
    """One search result: a section of a document. ``score`` is the document's relevance
    (higher is better: its best section's BM25 plus a small share of its other matching
    sections'); ``snippet`` is from the section's text, matched words marked ``[`` ``]``."""

    doc_id: str
    title: str
    type: str
    path: str | None
    line_start: int
    line_end: int
    score: float
    snippet: str
    heading: str
    tags: tuple[str, ...]
    status: str | None
    run_id: str | None
    stage: str | None
    section: int = 0  # the section's index, for ``KnowledgeIndex.section``
    found_by: tuple[str, ...] = ("bm25",)  # the rankings that found the document


@dataclass(frozen=True)
class Found:
    """A search's hits, the mode it ran in, and why it ran in another than asked, if it did."""

    mode: SearchMode
    hits: list[Hit]
    note: str | None = None


class Searcher:
    """The three search modes over one store (``KnowledgeIndex.find`` is its front door)."""

    def __init__(self, kstore: KnowledgeStore, settings: Settings, weights: Weights) -> None:
        self._kstore = kstore
        self.weights = weights
        self.embedder = embedder_spec(settings)
        self.rrf_k = rrf_k(settings)
        self._vectors: VectorIndex | None = None
        self._vectors_lock = anyio.Lock()
        if self.embedder.problem and self.embedder.explicit:
            log.warning("knowledge: dense search unavailable: %s", self.embedder.problem)

    @property
    def default_mode(self) -> SearchMode:
        """``hybrid`` when an embedder is configured and installed, else ``bm25``."""
        return "hybrid" if self.embedder.available else "bm25"

    async def vectors(self) -> VectorIndex:
        """The vector index, its embedder loaded on first use (in a worker thread, so the
        server's start-up never pays for it). Raises ``EmbedderUnavailable`` saying why."""
        async with self._vectors_lock:
            if self._vectors is None:
                from stageflow.knowledge.vectors import VectorIndex

                embedder = await anyio.to_thread.run_sync(load_embedder, self.embedder)
                self._vectors = VectorIndex(self._kstore.vectors, embedder)
            return self._vectors

    async def refresh_vectors(self) -> RefreshReport | None:
        """Embed what changed (None without an embedder); after a rebuild, drop vectors no
        section uses and other models' (``knowledge reindex``)."""
        if not self.embedder.available:
            return None
        vectors = await self.vectors()
        report = await vectors.refresh()
        await self._kstore.vectors.prune(vectors.model, other_models=True)
        return report

    async def find(
        self,
        query: str,
        *,
        types: Sequence[str] = (),
        tags: Sequence[str] = (),
        limit: int = 10,
        sections_per_doc: int = 1,
        mode: SearchMode | None = None,
    ) -> Found:
        """The best sections for ``query``, best first, at most ``sections_per_doc`` per
        document, ranked by ``mode`` (``bm25``, ``vector`` or ``hybrid``; None:
        ``default_mode``). ``types`` keeps those document types, ``tags`` documents with any of
        those tags. A query with nothing searchable lists the documents the filters select (by
        id), or nothing without filters. Never raises for any query text; asking for
        ``vector`` or ``hybrid`` without an embedder raises ``EmbedderUnavailable`` (by
        default the search falls back to BM25 and says so in ``note``)."""
        if mode is not None and mode not in SEARCH_MODES:
            raise InvalidArgument(f"unknown search mode {mode!r}; known: {', '.join(SEARCH_MODES)}")
        used: SearchMode = mode or self.default_mode
        limit = max(1, min(int(limit), MAX_LIMIT))
        per_doc = max(1, int(sections_per_doc))
        types = [str(t).strip().lower() for t in types][:MAX_FILTERS]
        tags = [str(t).strip().lower() for t in tags][:MAX_FILTERS]
        groups = query_groups(query)
        if not groups:
            if not types and not tags:
                return Found(used, [])
            rows = await self._kstore.list_documents(types=types, tags=tags, limit=limit)
            return Found(used, [_to_hit(r) for r in rows])
        note = None
        if used != "bm25":
            try:
                hits = await self._dense(query, groups, types, tags, limit, per_doc, used)
                return Found(used, hits)
            except EmbedderUnavailable as exc:
                if mode is not None:
                    raise EmbedderUnavailable(f"{exc}; search with mode 'bm25' instead") from exc
                log.warning("knowledge: %s; searching with BM25 only", exc)
                note, used = f"BM25 only: {exc}", "bm25"
        try:
            expr, _ = await self._expression(groups)
            docs = await self._ranked(expr, types, tags, limit, per_doc)
            picked = _pick(docs, per_doc, limit)
            snippets = await self._kstore.snippets(expr, [row.rowid for row, _ in picked])
        except sqlite3.OperationalError as exc:  # pragma: no cover - the expression is safe
            log.warning("knowledge search failed for %r: %s", query[:200], exc)
            return Found(used, [], note)
        hits = [_to_hit(row, score, snippets.get(row.rowid, "")) for row, score in picked]
        return Found(used, hits, note)

    async def _dense(
        self,
        query: str,
        groups: list[str],
        types: Sequence[str],
        tags: Sequence[str],
        limit: int,
        per_doc: int,
        mode: SearchMode,
    ) -> list[Hit]:
        vectors = await self.vectors()
        await vectors.refresh()  # up to date before its section count is read below
        allowed = await self._kstore.doc_rowids(types=types, tags=tags) if types or tags else None
        expr = ""
        bm25: list[tuple[Sequence[KnowledgeHitRow], float]] = []
        if mode == "hybrid":
            expr, counts = await self._expression(groups)
            docs = [rows for _, rows in await self._ranked(expr, types, tags, max(limit, DEPTH), 1)]
            total = max(vectors.sections, 1)  # held in memory: no count query
            weights = await coverage(self._kstore, groups, docs[:DEPTH], counts, total)
            bm25 = list(zip(docs[:DEPTH], weights, strict=True))
        candidates = await dense_candidates(
            self._kstore,
            vectors,
            query=query,
            bm25=bm25,
            allowed=allowed,
            limit=limit,
            per_doc=per_doc,
            k=self.rrf_k,
            hybrid=mode == "hybrid",
        )
        matched = [r.rowid for c in candidates for r in c.rows if r.rowid in c.matched]
        snippets = await self._kstore.snippets(expr, matched) if expr and matched else {}
        return [hit for c in candidates for hit in _candidate_hits(c, snippets)][:limit]

    async def _expression(self, groups: list[str]) -> tuple[str, list[int]]:
        """The FTS5 expression for ``groups`` and the sections each matches (capped at
        ``FOCUS_BUDGET + 1``; not counted for a one-term query)."""
        if len(groups) == 1:
            return groups[0], []
        counts = await self._kstore.match_counts(groups, cap=FOCUS_BUDGET + 1)
        return focused_query(groups, counts, FOCUS_BUDGET), counts

    async def _ranked(
        self, expr: str, types: Sequence[str], tags: Sequence[str], limit: int, per_doc: int
    ) -> list[tuple[float, list[KnowledgeHitRow]]]:
        """Documents with their matching sections, best first; reads more sections while too
        few documents have been seen."""
        fetch = max(MIN_FETCH, limit * per_doc * 4)
        while True:
            rows = await self._kstore.search(
                expr, rank=self.weights.rank(), types=types, tags=tags, limit=fetch
            )
            docs = _rank_documents(rows)
            if len(docs) * per_doc >= limit or len(rows) < fetch or fetch >= MAX_FETCH:
                return docs
            fetch *= 4


def _to_hit(row: KnowledgeHitRow, score: float | None = None, snippet: str | None = None) -> Hit:
    return Hit(
        doc_id=row.doc_id,
        title=row.title,
        type=row.type,
        path=row.path,
        line_start=row.line_start,
        line_end=row.line_end,
        # bm25 is lower-is-better; +0.0 turns -0.0 into 0.0
        score=round(-row.score if score is None else score, 4) + 0.0,
        snippet=row.snippet if snippet is None else snippet,
        heading=row.heading,
        tags=row.tags,
        status=row.status,
        run_id=row.run_id,
        stage=row.stage,
        section=row.section,
    )


def _candidate_hits(candidate: Candidate, snippets: dict[int, str]) -> list[Hit]:
    """The hits of one fused document: its sections, with FTS snippets where BM25 matched."""
    out: list[Hit] = []
    for row in candidate.rows:
        snippet = snippets.get(row.rowid) if row.rowid in candidate.matched else None
        hit = _to_hit(row, candidate.score, snippet if snippet is not None else _lead(row.snippet))
        out.append(dataclasses.replace(hit, found_by=candidate.found_by))
    return out


def _lead(text: str, chars: int = 160) -> str:
    """The start of a section's text, cut at a word, as the snippet of a hit no word matched."""
    flat = " ".join(text.split())
    if len(flat) <= chars:
        return flat
    cut = flat.rfind(" ", 0, chars)
    return flat[: cut if cut > chars // 2 else chars] + "…"


def _rank_documents(rows: Sequence[KnowledgeHitRow]) -> list[tuple[float, list[KnowledgeHitRow]]]:
    """Group section rows (best first) by document and order the documents by their score:
    the best section's, plus ``SECTION_BONUS`` of each further matching section's, so a
    document that answers in several places ranks above one lucky paragraph."""
    groups: dict[str, list[KnowledgeHitRow]] = {}
    for row in rows:
        groups.setdefault(row.doc_id, []).append(row)
    scored = [
        (-group[0].score + SECTION_BONUS * sum(-r.score for r in group[1:]), group)
        for group in groups.values()
    ]
    scored.sort(key=lambda item: -item[0])  # stable: ties keep FTS5's order
    return scored


def _pick(
    docs: Sequence[tuple[float, list[KnowledgeHitRow]]], per_doc: int, limit: int
) -> list[tuple[KnowledgeHitRow, float]]:
    """Up to ``per_doc`` sections of each document, in document order, ``limit`` in all."""
    out: list[tuple[KnowledgeHitRow, float]] = []
    for score, group in docs:
        for row in group[:per_doc]:
            out.append((row, score))
            if len(out) >= limit:
                return out
    return out
