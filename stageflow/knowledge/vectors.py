"""Dense retrieval over the knowledge index: section vectors in SQLite, searched with numpy.

Vectors live in the same database as the FTS5 index (``store.knowledge.vectors``), one per
(model, section content key), as float16 blobs of unit length. They are searched with numpy,
not sqlite-vec: the extension cannot be loaded into the ``sqlite3`` module of the Python this
project runs on (built without ``enable_load_extension``, as several distributions' Pythons
are), and sqlite-vec 0.1 would scan every vector on each query anyway, as numpy does here from
a matrix held in memory (100k sections: 100 MB of float32, a few milliseconds per query).

``refresh()`` keeps the matrix in step with the index. It runs before each search and costs
one ``SELECT`` when nothing changed (the tables' generation counter); after a change it reads
the section keys, reuses the vectors of keys it holds or the database holds, embeds only the
sections whose text is new to the model, stores those, and rebuilds the matrix. A document's
vector is the length-weighted mean of its sections'; a document scores
``ALPHA * its best section + (1 - ALPHA) * itself``, so a page that is about the question as a
whole ranks next to one with a single matching paragraph.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from stageflow.knowledge.embedders import Embedder, EmbedderUnavailable
from stageflow.store.knowledge_vectors import SectionText

if TYPE_CHECKING:
    from stageflow.store.knowledge_vectors import KnowledgeVectorStore

__all__ = ["ALPHA", "TEXT_VERSION", "RefreshReport", "VectorHit", "VectorIndex", "section_text"]

log = logging.getLogger(__name__)

#: Bumped when ``section_text`` changes: part of the model tag, so old vectors are not reused.
TEXT_VERSION = "text1"
ALPHA = 0.5
SECTION_BITS = 20
EMBED_BATCH = 512  # sections per worker-thread call while embedding

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


def section_text(title: str, tags: str, heading: str, body: str) -> str:
    """What a section's vector is made from: its document's title and tags, its heading
    (unless it repeats the title) and its text."""
    parts = [title, "" if heading == title else heading, tags, body]
    return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class VectorHit:
    """A document the vector ranking found: its score and its best sections (rowid, cosine)."""

    doc_rowid: int
    score: float
    sections: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class RefreshReport:
    """What a refresh did: the model, sections embedded now, vectors reused, seconds."""

    model: str
    embedded: int
    reused: int
    seconds: float


@dataclass(frozen=True)
class _Matrix:
    generation: int
    keys: dict[str, int]  # content key -> row
    rowids: Ints  # section rowids, ascending
    unit: Floats  # (sections, dim), unit rows
    weight: Floats  # (sections,), text length
    doc_rowids: Ints  # (docs,)
    starts: Ints  # (docs,), first row of each document
    doc_unit: Floats  # (docs, dim)


def _empty(generation: int) -> _Matrix:
    none_f = np.zeros((0, 0), np.float32)
    none_i = np.zeros(0, np.int64)
    return _Matrix(generation, {}, none_i, none_f, np.zeros(0, np.float32), none_i, none_i, none_f)


def _unit(rows: npt.NDArray[Any]) -> Floats:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: Floats = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return out


def _build(
    generation: int,
    keys: Sequence[tuple[int, str]],
    old: _Matrix,
    new: dict[str, tuple[int, bytes]],
) -> _Matrix:
    """The matrix for ``keys``: rows of ``old`` where it has the key, else from ``new``."""
    rows: list[int] = []
    picked: list[tuple[int, str]] = []
    fresh: list[tuple[int, str]] = []
    for rowid, key in keys:
        if key in old.keys:
            rows.append(old.keys[key])
            picked.append((rowid, key))
        elif key in new:
            fresh.append((rowid, key))
    if not picked and not fresh:
        return _empty(generation)
    dim = old.unit.shape[1] if picked else len(new[fresh[0][1]][1]) // 2
    unit = np.empty((len(picked) + len(fresh), dim), np.float32)
    weight = np.empty(len(unit), np.float32)
    if picked:
        unit[: len(picked)] = old.unit[rows]
        weight[: len(picked)] = old.weight[rows]
    for i, (_, key) in enumerate(fresh, len(picked)):
        w, blob = new[key]
        unit[i] = np.frombuffer(blob, dtype=np.float16)
        weight[i] = w
    order_rowids = np.array([r for r, _ in picked] + [r for r, _ in fresh], np.int64)
    order = np.argsort(order_rowids, kind="stable")
    rowids, unit, weight = order_rowids[order], unit[order], weight[order]
    all_keys = [k for _, k in picked] + [k for _, k in fresh]
    key_rows = {all_keys[j]: i for i, j in enumerate(order.tolist())}
    docs = rowids >> SECTION_BITS
    starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]]).astype(np.int64)
    doc_unit = _unit(np.add.reduceat(unit * weight[:, None], starts, axis=0))
    return _Matrix(generation, key_rows, rowids, unit, weight, docs[starts], starts, doc_unit)


class VectorIndex:
    """Section vectors of one embedder, kept in step with the index (see the docstring)."""

    def __init__(self, store: KnowledgeVectorStore, embedder: Embedder) -> None:
        self._store = store
        self._embedder = embedder
        self.model = f"{embedder.model}/{TEXT_VERSION}"
        floor = getattr(embedder, "min_similarity", 0.0)
        self.min_similarity = float(floor) if isinstance(floor, int | float) else 0.0
        self._matrix = _empty(-1)
        self._lock = anyio.Lock()

    async def refresh(self) -> RefreshReport:
        """Bring the vectors up to date with the index; embeds only sections new to the model."""
        started = time.perf_counter()
        async with self._lock:
            generation = await self._store.generation()
            if generation == self._matrix.generation:
                return RefreshReport(self.model, 0, self.sections, time.perf_counter() - started)
            if await self._store.backfill_keys():
                generation = await self._store.generation()
            keys = await self._store.section_keys()
            old = self._matrix
            wanted = list(dict.fromkeys(k for _, k in keys if k not in old.keys))
            stored = await self._store.embeddings(self.model, wanted)
            first_rowid: dict[str, int] = {}
            for rowid, key in keys:
                if key not in old.keys and key not in stored:
                    first_rowid.setdefault(key, rowid)
            made = await self._embed_missing(first_rowid)
            stored.update(made)
            self._matrix = await anyio.to_thread.run_sync(_build, generation, keys, old, stored)
            seconds = time.perf_counter() - started
            return RefreshReport(self.model, len(made), len(keys) - len(made), seconds)

    async def _embed_missing(self, first_rowid: dict[str, int]) -> dict[str, tuple[int, bytes]]:
        made: dict[str, tuple[int, bytes]] = {}
        rowids = sorted(first_rowid.values())
        for i in range(0, len(rowids), EMBED_BATCH):
            sections = await self._store.section_texts(rowids[i : i + EMBED_BATCH])
            rows = await anyio.to_thread.run_sync(self._embed_sections, sections)
            if not self._store.read_only:  # a read-only database: this process keeps them
                await self._store.put_embeddings(self.model, rows)
            made.update((key, (w, blob)) for key, w, blob in rows)
        return made

    def _embed_sections(self, sections: Sequence[SectionText]) -> list[tuple[str, int, bytes]]:
        from stageflow.store.knowledge_rows import section_key

        texts = [section_text(t, g, h, b) for _, t, g, h, b in sections]
        vectors = self._checked(texts)
        unit = _unit(vectors).astype(np.float16)
        return [
            (section_key(t, g, h, b), len(text), unit[i].tobytes())
            for i, ((_, t, g, h, b), text) in enumerate(zip(sections, texts, strict=True))
        ]

    def _checked(self, texts: Sequence[str]) -> Floats:
        try:
            out = np.asarray(self._embedder.embed(list(texts)), dtype=np.float32)
        except Exception as exc:
            raise EmbedderUnavailable(
                f"the embedder {self._embedder.model!r} failed: {exc}"
            ) from exc
        if out.ndim != 2 or out.shape[0] != len(texts) or out.shape[1] == 0:
            raise EmbedderUnavailable(
                f"the embedder {self._embedder.model!r} returned shape {out.shape} "
                f"for {len(texts)} texts (want one row per text)"
            )
        if self._matrix.unit.size and out.shape[1] != self._matrix.unit.shape[1]:
            raise EmbedderUnavailable(
                f"the embedder {self._embedder.model!r} changed dimension "
                f"({self._matrix.unit.shape[1]} -> {out.shape[1]}) without changing its model"
            )
        if not np.isfinite(out).all():
            raise EmbedderUnavailable(f"the embedder {self._embedder.model!r} returned NaN/inf")
        return out

    async def search(
        self, query: str, *, allowed: set[int] | None, depth: int, per_doc: int
    ) -> list[VectorHit]:
        """The ``depth`` documents nearest to ``query`` (of ``allowed`` ones, if given), best
        first, each with its ``per_doc`` best sections."""
        await self.refresh()
        matrix = self._matrix
        if not matrix.rowids.size:
            return []

        def work() -> list[VectorHit]:  # one worker-thread trip: embed the query, then rank
            vector = self._checked([query])[0]
            if vector.shape[0] != matrix.unit.shape[1]:
                raise EmbedderUnavailable(
                    f"the embedder {self._embedder.model!r} made a {vector.shape[0]}-dimension "
                    f"query for {matrix.unit.shape[1]}-dimension vectors"
                )
            return _nearest(matrix, vector, allowed, depth, per_doc, self.min_similarity)

        return await anyio.to_thread.run_sync(work)

    @property
    def sections(self) -> int:
        """How many section vectors are held in memory."""
        return int(self._matrix.rowids.size)


def _nearest(
    matrix: _Matrix,
    vector: Floats,
    allowed: set[int] | None,
    depth: int,
    per_doc: int,
    floor: float,
) -> list[VectorHit]:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return []
    query = vector / norm
    sims = matrix.unit @ query
    score = ALPHA * np.maximum.reduceat(sims, matrix.starts) + (1 - ALPHA) * (
        matrix.doc_unit @ query
    )
    if allowed is not None:
        keep = np.isin(matrix.doc_rowids, np.fromiter(allowed, np.int64, len(allowed)))
        score = np.where(keep, score, -np.inf)
    count = min(depth, int(np.isfinite(score).sum()))
    if count <= 0:
        return []
    top = np.argpartition(-score, count - 1)[:count]
    top = top[np.argsort(-score[top], kind="stable")]
    ends = np.r_[matrix.starts[1:], len(matrix.rowids)]
    hits: list[VectorHit] = []
    for d in top.tolist():
        lo, hi = int(matrix.starts[d]), int(ends[d])
        best = lo + np.argsort(-sims[lo:hi], kind="stable")[:per_doc]
        sections = tuple((int(matrix.rowids[i]), float(sims[i])) for i in best)
        hits.append(VectorHit(int(matrix.doc_rowids[d]), float(score[d]), sections))
    return hits
