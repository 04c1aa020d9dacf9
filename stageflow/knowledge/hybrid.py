"""Hybrid knowledge search: BM25 and vector rankings fused by reciprocal rank fusion.

Each ranking lists documents, best first, the type and tag filters already applied (BM25 in its
SQL, the vector ranking through the set of documents the filters select), ``DEPTH`` of them at
least. A document's fused score is

    confidence * coverage(d) / (k + bm25_rank(d))  +  1 / (k + vector_rank(d))

with ranks from 1 and ``k`` from ``[knowledge] rrf_k``. ``coverage`` is the share of the query's
weight (the terms' IDF) that the document's matching sections contain: a document that matches
every rare word of the question counts fully, one that matches a single common word counts
little. Plain RRF (coverage 1) lets such incidental matches outvote the vector ranking exactly
when the question is asked in other words than the document's, which is when the vector ranking
is the one that knows (measured on ``tests/knowledge``: see ``test_retrieval.py``).
``confidence`` is the best coverage of any BM25 document: when its best document matches only a
fifth of the question's weight, BM25's whole ranking is a list of incidental matches and counts
a fifth, so its first places no longer push the vector ranking's down. A question that some
document matches word for word has confidence 1 and is fused as before.

Within a document the same fusion orders its sections (ranks within the document). Hits say
which rankings found their document (``found_by``); sections only the vector ranking found get
the start of their text as snippet, since no word of the query matched them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from stageflow.config import Settings
from stageflow.store.knowledge import SECTION_BITS, KnowledgeHitRow

if TYPE_CHECKING:
    from stageflow.knowledge.vectors import VectorHit, VectorIndex
    from stageflow.store.knowledge import KnowledgeStore

__all__ = [
    "DEFAULT_RRF_K",
    "DEPTH",
    "SEARCH_MODES",
    "Candidate",
    "SearchMode",
    "confidence",
    "dense_candidates",
    "fuse",
]

log = logging.getLogger(__name__)

SearchMode = Literal["bm25", "vector", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("bm25", "vector", "hybrid")
DEFAULT_RRF_K = 5.0
DEPTH = 30  # documents each ranking contributes at least
PREVIEW_CHARS = 200


@dataclass(frozen=True)
class Candidate:
    """A fused document: its score, the rankings that found it and its sections, best first,
    as rows (BM25's, or read back for sections only the vector ranking found)."""

    doc_rowid: int
    score: float
    found_by: tuple[str, ...]
    rows: tuple[KnowledgeHitRow, ...]
    matched: frozenset[int]  # section rowids BM25 matched (they get FTS snippets)


def fuse(
    bm25: Sequence[tuple[int, float]], vector: Sequence[int], *, k: float
) -> list[tuple[int, float, tuple[str, ...]]]:
    """Weighted reciprocal rank fusion: (id, weight) of the BM25 ranking and ids of the vector
    ranking, best first -> (id, score, rankings that found it), best first (ties keep BM25's
    order, then the vector ranking's)."""
    scores: dict[int, float] = {}
    found: dict[int, list[str]] = {}
    for rank, (key, weight) in enumerate(bm25, 1):
        scores[key] = scores.get(key, 0.0) + weight / (k + rank)
        found.setdefault(key, []).append("bm25")
    for rank, key in enumerate(vector, 1):
        scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
        found.setdefault(key, []).append("vector")
    order = sorted(scores, key=lambda key: -scores[key])  # stable: insertion order breaks ties
    return [(key, scores[key], tuple(found[key])) for key in order]


def rrf_k(settings: Settings) -> float:
    """``[knowledge] rrf_k`` (a number above 0), else ``DEFAULT_RRF_K``; a bad value is
    logged with where it is and ignored."""
    section = settings.extra.get("knowledge")
    value = section.get("rrf_k") if isinstance(section, Mapping) else None
    if value is None:
        return DEFAULT_RRF_K
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6:
        return float(value)
    log.warning(
        "%s: knowledge.rrf_k: must be a number above 0, got %r; using %g",
        settings.config_file,
        value,
        DEFAULT_RRF_K,
    )
    return DEFAULT_RRF_K


def _idf(count: int, total: int) -> float:
    return math.log(1.0 + (total - count + 0.5) / (count + 0.5))


async def coverage(
    kstore: KnowledgeStore,
    groups: Sequence[str],
    docs: Sequence[Sequence[KnowledgeHitRow]],
    counts: Sequence[int],
    total: int,
) -> list[float]:
    """For each document (its matching rows), the IDF-weighted share of ``groups`` its rows
    match (1.0 for a one-term query). ``counts`` are the sections each group matches."""
    if len(groups) < 2:
        return [1.0] * len(docs)
    idf = [_idf(c, max(total, c)) for c in counts]
    whole = sum(idf) or 1.0
    matches = await kstore.group_matches(groups, [r.rowid for rows in docs for r in rows])
    out: list[float] = []
    for rows in docs:
        ids = {r.rowid for r in rows}
        out.append(sum(w for w, hit in zip(idf, matches, strict=True) if hit & ids) / whole)
    return out


def confidence(coverages: Sequence[float]) -> float:
    """How far the BM25 ranking is to be trusted: the best coverage among its documents (see
    the module docstring); 0 when it found nothing."""
    return max(coverages, default=0.0)


async def dense_candidates(
    kstore: KnowledgeStore,
    vectors: VectorIndex,
    *,
    query: str,
    bm25: Sequence[tuple[Sequence[KnowledgeHitRow], float]],
    allowed: set[int] | None,
    limit: int,
    per_doc: int,
    k: float,
    hybrid: bool,
) -> list[Candidate]:
    """Fuse the BM25 documents (their rows, best first, with their coverage weight) with
    the vector ranking (or, ``hybrid=False``, use the vector ranking alone): the best
    ``limit`` documents with up to ``per_doc`` sections each."""
    depth = max(DEPTH, limit)
    found = await vectors.search(query, allowed=allowed, depth=depth, per_doc=per_doc)
    by_doc: dict[int, VectorHit] = {h.doc_rowid: h for h in found}
    bm25_docs = {rows[0].rowid >> SECTION_BITS: (rows, w) for rows, w in bm25[:depth] if rows}
    if not hybrid:
        bm25_docs = {}
    if hybrid:
        sure = confidence([w for _, w in bm25_docs.values()])
        fused = fuse(
            [(d, w * sure) for d, (_, w) in bm25_docs.items()], [h.doc_rowid for h in found], k=k
        )
    else:
        fused = [(h.doc_rowid, h.score, ("vector",)) for h in found]
    chosen = fused[:limit]
    picks: list[tuple[int, float, tuple[str, ...], list[int], frozenset[int]]] = []
    for doc, score, by in chosen:
        rows, weight = bm25_docs.get(doc, ((), 0.0))
        matched = frozenset(r.rowid for r in rows)
        near = [s for s, _ in by_doc[doc].sections] if doc in by_doc else []
        sections = _order_sections([r.rowid for r in rows], near, weight=weight, k=k)
        picks.append((doc, score, by, sections[:per_doc], matched))
    known = {r.rowid: r for rows, _ in bm25_docs.values() for r in rows}
    missing = [s for *_, sections, _ in picks for s in sections if s not in known]
    if missing:
        known.update(
            (r.rowid, r) for r in await kstore.sections(missing, preview_chars=PREVIEW_CHARS)
        )
    out: list[Candidate] = []
    for doc, score, by, sections, matched in picks:
        rows = tuple(known[s] for s in sections if s in known)
        if rows:
            out.append(Candidate(doc, score, by, rows, matched))
    return out


def _order_sections(
    bm25: Sequence[int], vector: Sequence[int], *, weight: float, k: float
) -> list[int]:
    """A document's sections by the same fusion, ranks counted within the document."""
    return [s for s, _, _ in fuse([(s, weight) for s in bm25], vector, k=k)]
