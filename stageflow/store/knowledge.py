"""The knowledge base's tables: documents, tags, source-file state and the FTS5 section index.

``KnowledgeStore`` is reached as ``store.knowledge`` and shares the ``Store``'s connection and
lock. It knows rows, not Markdown: ``stageflow.knowledge`` parses files into documents and
sections and hands them over as ``KnowledgeDocRow`` / ``KnowledgeSectionRow``.

Every change is one ``KnowledgeChange`` applied in one ``BEGIN IMMEDIATE`` transaction, with a
handful of statements however many documents it carries (``executemany``): a full rebuild of
100k sections costs a few trips to the connection's thread, not one per row.

A section's FTS rowid is ``doc_rowid << SECTION_BITS | index`` (see migration 3), so a document
is a rowid range of the index and a hit finds its document by integer primary key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from stageflow.store.connection import fetch_all
from stageflow.store.knowledge_rows import (
    DOC_COLUMNS,
    ChangeResult,
    KnowledgeChange,
    KnowledgeDocRow,
    KnowledgeFileRow,
    KnowledgeHitRow,
    KnowledgeSectionRow,
    Refusal,
    doc_from_row,
    hit_from_row,
    section_key,
)
from stageflow.store.knowledge_vectors import KnowledgeVectorStore

if TYPE_CHECKING:
    import aiosqlite

    from stageflow.store.database import Database

__all__ = [
    "MAX_SECTIONS",
    "SECTION_BITS",
    "ChangeResult",
    "KnowledgeChange",
    "KnowledgeDocRow",
    "KnowledgeFileRow",
    "KnowledgeHitRow",
    "KnowledgeSectionRow",
    "KnowledgeStore",
    "Refusal",
]

T = TypeVar("T")

SECTION_BITS = 20
#: Sections one document may have (the rowid layout's limit).
MAX_SECTIONS = 1 << SECTION_BITS
_SECTION_MASK = MAX_SECTIONS - 1
_CHUNK = 500  # host parameters per IN (...) list, well under SQLite's limit

_INSERT_DOC = (
    f"INSERT INTO knowledge_docs (doc_rowid, {DOC_COLUMNS}, indexed_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SECTION = (
    "INSERT INTO knowledge_fts (rowid, title, tags, meta, heading, body, line_start, line_end) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_KEY = "INSERT INTO knowledge_section_keys (section_rowid, key) VALUES (?, ?)"
_BUMP = "UPDATE knowledge_state SET generation = generation + 1"
_INSERT_TAG = "INSERT OR IGNORE INTO knowledge_tags (tag, doc_rowid) VALUES (?, ?)"
_DELETE_DOC = "DELETE FROM knowledge_docs WHERE doc_rowid = ?"  # the trigger drops its sections
_NEXT_ROWID = "SELECT COALESCE(MAX(doc_rowid), 0) + 1 FROM knowledge_docs"
_UPSERT_FILE = (
    "INSERT INTO knowledge_files (path, root, doc_id, mtime_ns, size, sha256) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET root = excluded.root, "
    "doc_id = excluded.doc_id, mtime_ns = excluded.mtime_ns, size = excluded.size, "
    "sha256 = excluded.sha256"
)
_FORGET_FILE = "DELETE FROM knowledge_files WHERE path = ?"
_FILE_COLUMNS = "path, root, doc_id, mtime_ns, size, sha256"

# One row per matching section, best first. ``rank`` with ``rank MATCH 'bm25(...)'`` lets FTS5
# sort by the weighted score itself; snippets are made afterwards, for the rows kept only.
_SEARCH = (
    f"SELECT d.doc_id, d.title, d.type, d.tags, d.status, d.path, d.run_id, d.stage, "
    f"f.rowid & {_SECTION_MASK}, f.heading, f.line_start, f.line_end, f.rank, '', f.rowid "
    f"FROM knowledge_fts f JOIN knowledge_docs d ON d.doc_rowid = (f.rowid >> {SECTION_BITS}) "
    "WHERE knowledge_fts MATCH ? AND rank MATCH ?{filters} ORDER BY rank LIMIT ?"
)
_SNIPPETS = (
    "SELECT rowid, snippet(knowledge_fts, 4, '[', ']', '…', ?) FROM knowledge_fts "
    "WHERE knowledge_fts MATCH ? AND rowid IN ({marks})"
)
_COUNT = "(SELECT count(*) FROM (SELECT 1 FROM knowledge_fts WHERE knowledge_fts MATCH ? LIMIT ?))"
_LIST = (  # documents matching only the filters (an empty query), by id
    "SELECT d.doc_id, d.title, d.type, d.tags, d.status, d.path, d.run_id, d.stage, "
    "0, f.heading, f.line_start, f.line_end, 0.0, substr(f.body, 1, ?), f.rowid "
    f"FROM knowledge_docs d JOIN knowledge_fts f ON f.rowid = (d.doc_rowid << {SECTION_BITS}) "
    "WHERE 1{filters} ORDER BY d.doc_id LIMIT ?"
)
_SECTIONS = (  # sections by rowid, for hits the vector ranking found
    "SELECT d.doc_id, d.title, d.type, d.tags, d.status, d.path, d.run_id, d.stage, "
    f"f.rowid & {_SECTION_MASK}, f.heading, f.line_start, f.line_end, 0.0, "
    "substr(f.body, 1, ?), f.rowid FROM knowledge_fts f JOIN knowledge_docs d "
    f"ON d.doc_rowid = (f.rowid >> {SECTION_BITS}) WHERE f.rowid IN ({{marks}})"
)
_TYPE_FILTER = " AND d.type IN ({marks})"
_TAG_FILTER = " AND d.doc_rowid IN (SELECT doc_rowid FROM knowledge_tags WHERE tag IN ({marks}))"
_GET_DOC = f"SELECT {DOC_COLUMNS} FROM knowledge_docs WHERE doc_id = ?"
_GET_SECTION = (
    "SELECT f.heading, f.line_start, f.line_end, f.body FROM knowledge_fts f "
    f"JOIN knowledge_docs d ON f.rowid = ((d.doc_rowid << {SECTION_BITS}) | ?) WHERE d.doc_id = ?"
)


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def _ids_where(
    conn: aiosqlite.Connection, column: str, values: Sequence[str]
) -> list[tuple[Any, ...]]:
    """(doc_rowid, doc_id, path, version) of the documents whose ``column`` is in ``values``."""
    out: list[tuple[Any, ...]] = []
    for part in _chunks(values):
        sql = (
            "SELECT doc_rowid, doc_id, path, version FROM knowledge_docs "
            f"WHERE {column} IN ({_marks(len(part))})"
        )
        out.extend(await fetch_all(conn, sql, part))
    return out


class KnowledgeStore:
    """The knowledge tables, on a ``Store``'s database (``store.knowledge``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.vectors = KnowledgeVectorStore(db)

    async def apply(self, change: KnowledgeChange, *, at: float) -> ChangeResult:
        """Apply ``change`` in one transaction (see ``KnowledgeChange`` for the order).

        A put whose id is held by a document from another path (or an artifact, for a file) is
        refused, not applied, and reported; so is the second of two puts with one id. An
        artifact put with a lower ``version`` than the stored one is skipped as stale.
        """
        async with self._db.write() as conn:
            return await self._apply(conn, change, at)

    async def _apply(
        self, conn: aiosqlite.Connection, change: KnowledgeChange, at: float
    ) -> ChangeResult:
        gone: dict[str, None] = {}  # ids removed so far, in order
        if change.replace_all_files:
            rows = await fetch_all(
                conn, "SELECT doc_id FROM knowledge_docs WHERE path IS NOT NULL ORDER BY doc_id"
            )
            gone.update((r[0], None) for r in rows)
            await conn.execute("DELETE FROM knowledge_docs WHERE path IS NOT NULL")
            await conn.execute("DELETE FROM knowledge_files")
        doomed = await _ids_where(conn, "path", change.delete_paths)
        doomed += await _ids_where(conn, "doc_id", change.delete_docs)
        if doomed:
            await conn.executemany(_DELETE_DOC, [(r[0],) for r in doomed])
            gone.update((r[1], None) for r in doomed)
        existing = {
            r[1]: r for r in await _ids_where(conn, "doc_id", [d.doc_id for d, _ in change.put])
        }
        added: list[str] = []
        updated: list[str] = []
        refused: list[Refusal] = []
        stale: list[str] = []
        replaced: list[tuple[int]] = []
        accepted: list[tuple[KnowledgeDocRow, list[KnowledgeSectionRow]]] = []
        seen: dict[str, str | None] = {}
        for doc, sections in change.put:
            if doc.doc_id in seen:
                refused.append(Refusal(doc.doc_id, doc.path, seen[doc.doc_id]))
                continue
            old = existing.get(doc.doc_id)
            if old is not None:
                _, _, old_path, old_version = old
                if old_path != doc.path:
                    refused.append(Refusal(doc.doc_id, doc.path, old_path))
                    continue
                if (
                    old_version is not None
                    and doc.version is not None
                    and old_version > doc.version
                ):
                    stale.append(doc.doc_id)
                    continue
                replaced.append((old[0],))
            seen[doc.doc_id] = doc.path
            accepted.append((doc, sections))
            was_there = old is not None or doc.doc_id in gone
            (updated if was_there else added).append(doc.doc_id)
            gone.pop(doc.doc_id, None)
        if replaced:
            await conn.executemany(_DELETE_DOC, replaced)
        if accepted:
            await self._insert(conn, accepted, at)
        if change.files:
            await conn.executemany(
                _UPSERT_FILE,
                [(f.path, f.root, f.doc_id, f.mtime_ns, f.size, f.sha256) for f in change.files],
            )
        if change.forget_files:
            await conn.executemany(_FORGET_FILE, [(p,) for p in change.forget_files])
        if gone or accepted:  # the sections changed: vectors held in memory are stale
            await conn.execute(_BUMP)
        return ChangeResult(
            added=tuple(added),
            updated=tuple(updated),
            removed=tuple(gone),
            refused=tuple(refused),
            stale=tuple(stale),
        )

    async def _insert(
        self,
        conn: aiosqlite.Connection,
        docs: Sequence[tuple[KnowledgeDocRow, list[KnowledgeSectionRow]]],
        at: float,
    ) -> None:
        # Inside BEGIN IMMEDIATE nobody else can insert, so rowids can be handed out here.
        next_rowid = int((await fetch_all(conn, _NEXT_ROWID))[0][0])
        doc_rows: list[tuple[Any, ...]] = []
        section_rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[str, int]] = []
        for offset, (doc, sections) in enumerate(docs):
            if len(sections) > MAX_SECTIONS:
                raise ValueError(f"document '{doc.doc_id}' has more than {MAX_SECTIONS} sections")
            rowid = next_rowid + offset
            tags = json.dumps(list(doc.tags))
            doc_rows.append(
                (
                    rowid,
                    doc.doc_id,
                    doc.title,
                    doc.type,
                    tags,
                    doc.status,
                    doc.path,
                    doc.body,
                    doc.body_line,
                    doc.run_id,
                    doc.stage,
                    doc.version,
                    len(sections),
                    at,
                )
            )
            tag_text = " ".join(doc.tags)
            base = rowid << SECTION_BITS
            section_rows.extend(
                (
                    base | i,
                    doc.title,
                    tag_text,
                    doc.keywords,
                    s.heading,
                    s.text,
                    s.line_start,
                    s.line_end,
                )
                for i, s in enumerate(sections)
            )
            tag_rows.extend((t.lower(), rowid) for t in doc.tags)
        await conn.executemany(_INSERT_DOC, doc_rows)
        await conn.executemany(_INSERT_SECTION, section_rows)
        # after the inserts, which check the rows: a key is the hash of the stored columns
        keys = [(r[0], section_key(r[1], r[2], r[4], r[5])) for r in section_rows]
        await conn.executemany(_INSERT_KEY, keys)
        if tag_rows:
            await conn.executemany(_INSERT_TAG, tag_rows)

    async def search(
        self,
        match: str,
        *,
        rank: str,
        types: Sequence[str] = (),
        tags: Sequence[str] = (),
        limit: int = 10,
    ) -> list[KnowledgeHitRow]:
        """Sections matching the FTS5 expression ``match``, best first, without snippets.

        ``rank`` is the ranking function, e.g. ``bm25(10.0, 6.0, 3.0, 4.0, 1.0)``; ``types``
        keeps documents of those types, ``tags`` documents with any of those tags.
        """
        filters, params = _filters(types, tags)
        sql = _SEARCH.format(filters=filters)
        async with self._db.read() as conn:
            rows = await fetch_all(conn, sql, [match, rank, *params, limit])
        return [hit_from_row(r) for r in rows]

    async def snippets(
        self, match: str, rowids: Sequence[int], *, tokens: int = 16
    ) -> dict[int, str]:
        """The body snippet of each section (by rowid) for ``match``, matched words in ``[ ]``."""
        if not rowids:
            return {}
        sql = _SNIPPETS.format(marks=_marks(len(rowids)))
        async with self._db.read() as conn:
            rows = await fetch_all(conn, sql, [tokens, match, *rowids])
        return {int(r[0]): r[1] for r in rows}

    async def group_matches(
        self, expressions: Sequence[str], rowids: Sequence[int]
    ) -> list[set[int]]:
        """For each FTS5 expression, which of the sections ``rowids`` it matches."""
        out: list[set[int]] = [set() for _ in expressions]
        if not expressions or not rowids:
            return out
        ids = list(rowids)[:_CHUNK]
        part = f"knowledge_fts MATCH ? AND rowid IN ({_marks(len(ids))})"
        sql = " UNION ALL ".join(
            f"SELECT {i}, rowid FROM knowledge_fts WHERE {part}" for i in range(len(expressions))
        )
        params: list[object] = []
        for expression in expressions:
            params += [expression, *ids]
        async with self._db.read() as conn:
            for i, rowid in await fetch_all(conn, sql, params):
                out[int(i)].add(int(rowid))
        return out

    async def sections(
        self, rowids: Sequence[int], *, preview_chars: int = 200
    ) -> list[KnowledgeHitRow]:
        """These sections with their documents' fields (score 0, the body's start as snippet)."""
        out: list[KnowledgeHitRow] = []
        async with self._db.read() as conn:
            for part in _chunks(list(rowids)):
                sql = _SECTIONS.format(marks=_marks(len(part)))
                out.extend(
                    hit_from_row(r) for r in await fetch_all(conn, sql, [preview_chars, *part])
                )
        return out

    async def doc_rowids(self, *, types: Sequence[str] = (), tags: Sequence[str] = ()) -> set[int]:
        """The documents the type and tag filters select (every one without filters)."""
        filters, params = _filters(types, tags)
        async with self._db.read() as conn:
            rows = await fetch_all(
                conn, f"SELECT d.doc_rowid FROM knowledge_docs d WHERE 1{filters}", params
            )
        return {int(r[0]) for r in rows}

    async def match_counts(self, expressions: Sequence[str], *, cap: int) -> list[int]:
        """How many sections each FTS5 expression matches, counting up to ``cap`` at most."""
        if not expressions:
            return []
        sql = "SELECT " + ", ".join(_COUNT for _ in expressions)
        params: list[object] = []
        for expression in expressions:
            params += [expression, cap]
        async with self._db.read() as conn:
            rows = await fetch_all(conn, sql, params)
        return [int(n) for n in rows[0]]

    async def list_documents(
        self,
        *,
        types: Sequence[str] = (),
        tags: Sequence[str] = (),
        limit: int = 10,
        preview_chars: int = 200,
    ) -> list[KnowledgeHitRow]:
        """The first section of each document matching the filters, ordered by id (score 0)."""
        filters, params = _filters(types, tags)
        sql = _LIST.format(filters=filters)
        async with self._db.read() as conn:
            rows = await fetch_all(conn, sql, [preview_chars, *params, limit])
        return [hit_from_row(r) for r in rows]

    async def get_document(self, doc_id: str) -> KnowledgeDocRow | None:
        """The document with this id, or None."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _GET_DOC, (doc_id,))
        return doc_from_row(rows[0]) if rows else None

    async def get_section(self, doc_id: str, index: int) -> KnowledgeSectionRow | None:
        """One indexed section of a document, or None."""
        if not 0 <= index < MAX_SECTIONS:
            return None
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _GET_SECTION, (index, doc_id))
        if not rows:
            return None
        heading, start, end, text = rows[0]
        return KnowledgeSectionRow(heading, int(start), int(end), text)

    async def doc_ids(self, *, prefix: str = "", limit: int = 1000) -> list[str]:
        """Document ids starting with ``prefix``, sorted."""
        # range scan on the unique index instead of LIKE, which would need escaping
        sql = "SELECT doc_id FROM knowledge_docs WHERE doc_id >= ? AND doc_id < ? ORDER BY doc_id"
        async with self._db.read() as conn:
            rows = await fetch_all(conn, sql + " LIMIT ?", (prefix, prefix + "\U0010ffff", limit))
        return [r[0] for r in rows]

    async def files(
        self, *, paths: Sequence[str] | None = None, under: str | None = None
    ) -> dict[str, KnowledgeFileRow]:
        """Source files the index has seen, by project-relative path: all of them, or those at
        ``paths``, or those inside the folder ``under`` ("" is the whole project)."""
        base = f"SELECT {_FILE_COLUMNS} FROM knowledge_files"
        async with self._db.read() as conn:
            if under:
                prefix = under.rstrip("/") + "/"
                sql = base + " WHERE path >= ? AND path < ?"
                rows = await fetch_all(conn, sql, (prefix, prefix + "\U0010ffff"))
            elif paths is not None:
                rows = []
                for part in _chunks(list(paths)):
                    sql = base + f" WHERE path IN ({_marks(len(part))})"
                    rows.extend(await fetch_all(conn, sql, part))
            else:
                rows = await fetch_all(conn, base)
        return {r[0]: KnowledgeFileRow(*r) for r in rows}

    async def files_wanting(self, doc_ids: Sequence[str]) -> list[KnowledgeFileRow]:
        """Files that ask for one of ``doc_ids`` but are not the document's source (refused
        as duplicates): candidates to index once the id is free."""
        out: list[KnowledgeFileRow] = []
        async with self._db.read() as conn:
            for part in _chunks(doc_ids):
                sql = (
                    f"SELECT {_FILE_COLUMNS} FROM knowledge_files k WHERE k.doc_id IN "
                    f"({_marks(len(part))}) AND NOT EXISTS (SELECT 1 FROM knowledge_docs d "
                    "WHERE d.doc_id = k.doc_id AND d.path = k.path) ORDER BY k.path"
                )
                out.extend(KnowledgeFileRow(*r) for r in await fetch_all(conn, sql, part))
        return out

    async def counts(self) -> tuple[int, int]:
        """(documents, sections) in the index."""
        async with self._db.read() as conn:
            rows = await fetch_all(
                conn, "SELECT COUNT(*), COALESCE(SUM(sections), 0) FROM knowledge_docs"
            )
        return int(rows[0][0]), int(rows[0][1])

    async def optimize(self) -> None:
        """Merge the FTS5 index's b-trees into one (after a full rebuild: faster queries)."""
        async with self._db.write() as conn:
            await conn.execute("INSERT INTO knowledge_fts(knowledge_fts) VALUES ('optimize')")


def _filters(types: Sequence[str], tags: Sequence[str]) -> tuple[str, list[str]]:
    filters = ""
    params: list[str] = []
    if types:
        filters += _TYPE_FILTER.format(marks=_marks(len(types)))
        params.extend(types)
    if tags:
        filters += _TAG_FILTER.format(marks=_marks(len(tags)))
        params.extend(t.lower() for t in tags)
    return filters, params
