"""The knowledge index: Markdown files and run artifacts, split into sections, in SQLite FTS5.

``KnowledgeIndex`` keeps ``store.knowledge`` in step with the project's knowledge files:

- ``reindex()`` rebuilds every file-based document (artifacts are kept);
- ``sync()`` looks at every file but re-reads only those whose mtime or size changed, and
  re-indexes only those whose SHA-256 changed; files that disappeared are removed;
- ``update_paths(paths)`` is the watcher's entry: just those paths (a folder means the files
  under it), a missing one is removed;
- ``index_artifact(...)`` indexes a run artifact as document ``run/<run>/<stage>/<name>``; a
  newer version replaces the older one.

Each change is written in one transaction; file reading and parsing run in a worker thread.

Searching (BM25, vector or hybrid) is ``knowledge/search.py``'s ``Searcher``.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from stageflow.config import Settings
from stageflow.errors import NotFound, Problem
from stageflow.knowledge.documents import Document, first_h1
from stageflow.knowledge.hybrid import SearchMode
from stageflow.knowledge.scan import TYPE_WORDS, FileScanner, Scan, document_rows
from stageflow.knowledge.search import (
    DEFAULT_WEIGHTS,
    MAX_LIMIT,
    Found,
    Hit,
    Searcher,
    Weights,
)
from stageflow.knowledge.sections import Section
from stageflow.knowledge.sources import project_path
from stageflow.store import Store
from stageflow.store.knowledge import ChangeResult, KnowledgeChange, KnowledgeFileRow

if TYPE_CHECKING:
    from stageflow.knowledge.vectors import RefreshReport, VectorIndex

__all__ = ["MAX_LIMIT", "Found", "Hit", "IndexReport", "KnowledgeIndex", "Weights"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexReport:
    """What a reindex, sync or update did. ``changed_ids`` are the documents added or
    updated, ``removed_ids`` those removed (for resource-updated notifications)."""

    added: int
    updated: int
    removed: int
    unchanged: int
    errors: list[Problem]
    seconds: float
    changed_ids: tuple[str, ...] = ()
    removed_ids: tuple[str, ...] = ()


class KnowledgeIndex:
    """Indexing and search over the project's knowledge (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        weights: Weights = DEFAULT_WEIGHTS,
        max_section_chars: int = 4000,
    ) -> None:
        self._kstore = store.knowledge
        self._settings = settings
        self.weights = weights
        self._max_chars = max_section_chars
        self._scanner = FileScanner(settings, max_chars=max_section_chars)
        self._lock = anyio.Lock()  # one indexing change at a time: they read, then write
        self._searcher = Searcher(store.knowledge, settings, weights)
        self.embedder = self._searcher.embedder

    @property
    def default_mode(self) -> SearchMode:
        """``hybrid`` when an embedder is configured and installed, else ``bm25``."""
        return self._searcher.default_mode

    async def vectors(self) -> VectorIndex:
        """The vector index, its embedder loaded on first use (``EmbedderUnavailable``)."""
        return await self._searcher.vectors()

    async def refresh_vectors(self) -> RefreshReport | None:
        """Embed the sections new to the model and drop unused vectors (None: no embedder)."""
        return await self._searcher.refresh_vectors()

    # -- indexing ----------------------------------------------------------------------------

    async def reindex(self) -> IndexReport:
        """Rebuild every file-based document from the files (CLI ``knowledge reindex``)."""
        async with self._lock:
            started = time.perf_counter()
            scan = await anyio.to_thread.run_sync(self._scanner.scan_all)
            scan.change.replace_all_files = True
            result = await self._kstore.apply(scan.change, at=time.time())
            if len(scan.change.put) > 1:
                await self._kstore.optimize()
            return self._report(result, scan, started)

    async def sync(self) -> IndexReport:
        """Bring the index up to date with the files, re-reading only changed ones."""
        async with self._lock:
            started = time.perf_counter()
            stored = await self._kstore.files()
            scan = await anyio.to_thread.run_sync(self._scanner.scan_changed, stored)
            return await self._apply_incremental(scan, started)

    async def update_paths(self, paths: Iterable[Path]) -> IndexReport:
        """Re-read just these paths (files, or folders meaning the files under them); a path
        that no longer exists, or is no longer a knowledge file, is removed from the index."""
        async with self._lock:
            started = time.perf_counter()
            wanted: dict[str, Path] = {}
            stored: dict[str, KnowledgeFileRow] = {}
            for raw in paths:
                full = raw if raw.is_absolute() else self._settings.project / raw
                rel = project_path(self._settings, full)
                if rel is None:
                    continue
                wanted[rel] = full
                if full.is_dir() or not full.exists():  # a folder, or a deleted one
                    stored.update(await self._kstore.files(under=rel))
            stored.update(await self._kstore.files(paths=list(wanted)))
            scan = await anyio.to_thread.run_sync(self._scanner.scan_paths, wanted, stored)
            return await self._apply_incremental(scan, started)

    async def index_artifact(
        self, *, run_id: str, stage: str, name: str, version: int, content: str, task: str
    ) -> None:
        """Index a run artifact as ``run/<run>/<stage>/<name>`` (type ``artifact``); a newer
        version replaces the indexed one, an older one is ignored."""
        doc = Document(
            doc_id=f"run/{run_id}/{stage}/{name}",
            title=first_h1(content) or f"{name} ({stage})",
            type="artifact",
            tags=(),
            status=None,
            path=None,
            body=content,
            body_line=1,
            run_id=run_id,
            stage=stage,
        )
        keywords = f"{TYPE_WORDS['artifact']} {stage} {name} {task}"
        put = document_rows(
            doc, keywords=keywords, problems=[], max_chars=self._max_chars, version=version
        )
        async with self._lock:
            await self._kstore.apply(KnowledgeChange(put=[put]), at=time.time())

    # -- reading -----------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        types: Sequence[str] = (),
        tags: Sequence[str] = (),
        limit: int = 10,
        sections_per_doc: int = 1,
        mode: SearchMode | None = None,
    ) -> list[Hit]:
        """The best sections for ``query``, best first (``find`` without the mode)."""
        found = await self.find(
            query, types=types, tags=tags, limit=limit, sections_per_doc=sections_per_doc, mode=mode
        )
        return found.hits

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
        """Search in ``mode`` (None: ``default_mode``); see ``Searcher.find``."""
        return await self._searcher.find(
            query, types=types, tags=tags, limit=limit, sections_per_doc=sections_per_doc, mode=mode
        )

    async def get(self, doc_id: str) -> Document:
        """The document with this id; ``NotFound("knowledge document", ...)`` listing ids like
        it otherwise."""
        row = await self._kstore.get_document(doc_id)
        if row is None:
            raise NotFound("knowledge document", doc_id, known=await self._similar_ids(doc_id))
        return Document(
            doc_id=row.doc_id,
            title=row.title,
            type=row.type,  # type: ignore[arg-type]
            tags=row.tags,
            status=row.status,
            path=row.path,
            body=row.body,
            body_line=row.body_line,
            run_id=row.run_id,
            stage=row.stage,
        )

    async def section(self, doc_id: str, index: int) -> Section:
        """One section of a document as indexed (``Hit.section`` names it)."""
        row = await self._kstore.get_section(doc_id, index)
        if row is None:
            if await self._kstore.get_document(doc_id) is None:
                raise NotFound("knowledge document", doc_id, await self._similar_ids(doc_id))
            raise NotFound("knowledge section", f"{doc_id}#{index}")
        return Section(doc_id, index, row.heading, row.line_start, row.line_end, row.text)

    async def counts(self) -> tuple[int, int]:
        """(documents, sections) in the index."""
        return await self._kstore.counts()

    async def _similar_ids(self, doc_id: str) -> list[str]:
        folder = doc_id.rsplit("/", 1)[0] + "/" if "/" in doc_id else ""
        ids = await self._kstore.doc_ids(prefix=folder, limit=2000)
        if not ids and folder:
            ids = await self._kstore.doc_ids(limit=2000)
        close = difflib.get_close_matches(doc_id, ids, n=10, cutoff=0.5)
        return close + [i for i in ids if i not in close]

    # -- internals ---------------------------------------------------------------------------

    async def _apply_incremental(self, scan: Scan, started: float) -> IndexReport:
        result = await self._kstore.apply(scan.change, at=time.time())
        if result.removed:  # a file refused for using a taken id may get it now
            waiting = await self._kstore.files_wanting(result.removed)
            if waiting:
                retry = await anyio.to_thread.run_sync(
                    self._scanner.scan_paths,
                    {w.path: self._settings.project / w.path for w in waiting},
                    {w.path: w for w in waiting},
                    True,
                )
                extra = await self._kstore.apply(retry.change, at=time.time())
                scan.problems.extend(retry.problems)
                result = _merge(result, extra)
        return self._report(result, scan, started)

    def _report(self, result: ChangeResult, scan: Scan, started: float) -> IndexReport:
        problems = list(scan.problems)
        for refusal in result.refused:
            owner = refusal.owner or "a run artifact"
            problems.append(
                Problem(
                    f"knowledge id '{refusal.doc_id}' is already used by {owner}; "
                    "this file is not indexed (give it another 'id')",
                    file=refusal.path,
                    path="id",
                )
            )
        for problem in problems[len(scan.problems) :]:
            log.warning("knowledge: %s", problem)
        return IndexReport(
            added=len(result.added),
            updated=len(result.updated),
            removed=len(result.removed),
            unchanged=scan.unchanged,
            errors=problems,
            seconds=time.perf_counter() - started,
            changed_ids=result.added + result.updated,
            removed_ids=result.removed,
        )


def _merge(first: ChangeResult, then: ChangeResult) -> ChangeResult:
    """Two changes as one: an id removed by ``first`` and taken again by ``then`` was updated."""
    revived = tuple(i for i in then.added if i in first.removed)
    again = set(then.added) | set(then.updated)
    return ChangeResult(
        added=first.added + tuple(i for i in then.added if i not in first.removed),
        updated=first.updated + then.updated + revived,
        removed=tuple(i for i in first.removed if i not in again),
        refused=first.refused + then.refused,
        stale=first.stale + then.stale,
    )
