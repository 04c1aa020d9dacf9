"""The tables behind dense knowledge search: section content keys, embeddings, the generation.

``KnowledgeVectorStore`` is reached as ``store.knowledge.vectors``. It stores bytes, not
arrays: ``stageflow.knowledge.vectors`` turns them into matrices and decides what to embed.

- ``knowledge_section_keys`` maps each FTS section rowid to the SHA-256 of the text its vector
  is made from (written with the section by ``KnowledgeStore``, dropped with its document);
- ``knowledge_embeddings`` holds one vector per (model, key): a re-indexed document whose
  sections did not change finds its vectors again, and vectors of another model are never used;
- ``knowledge_state.generation`` is bumped by every change of the sections, so a process that
  holds vectors in memory re-reads the keys only when something changed, its own writes and
  other processes' alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from stageflow.store.connection import fetch_all
from stageflow.store.knowledge_rows import section_key

if TYPE_CHECKING:
    from stageflow.store.database import Database

__all__ = ["KnowledgeVectorStore", "SectionText"]

_CHUNK = 500  # host parameters per IN (...) list
_SECTION_BITS = 20  # as in migration 3: a section's rowid is doc_rowid << 20 | index

#: (section rowid, title, tags, heading, body) of one indexed section.
SectionText = tuple[int, str, str, str, str]

_GENERATION = "SELECT generation FROM knowledge_state WHERE id = 1"
_BUMP = "UPDATE knowledge_state SET generation = generation + 1"
_KEYS = "SELECT section_rowid, key FROM knowledge_section_keys ORDER BY section_rowid"
_PUT = "INSERT OR IGNORE INTO knowledge_embeddings (model, key, weight, vector) VALUES (?, ?, ?, ?)"
_TEXTS = "SELECT rowid, title, tags, heading, body FROM knowledge_fts WHERE rowid IN ({marks})"
_TOTALS = (
    "SELECT (SELECT count(*) FROM knowledge_section_keys), "
    "(SELECT COALESCE(SUM(sections), 0) FROM knowledge_docs)"
)
# documents with fewer keys than sections: indexed before migration 4
_UNKEYED_DOCS = (
    "SELECT d.doc_rowid FROM knowledge_docs d WHERE d.sections > (SELECT count(*) FROM "
    "knowledge_section_keys k WHERE k.section_rowid >= (d.doc_rowid << 20) "
    "AND k.section_rowid < ((d.doc_rowid + 1) << 20))"
)
_DOC_TEXTS = (
    "SELECT rowid, title, tags, heading, body FROM knowledge_fts WHERE rowid >= ? AND rowid < ?"
)
_PUT_KEY = "INSERT OR IGNORE INTO knowledge_section_keys (section_rowid, key) VALUES (?, ?)"
_PRUNE_UNUSED = (
    "DELETE FROM knowledge_embeddings WHERE model = ? AND NOT EXISTS "
    "(SELECT 1 FROM knowledge_section_keys k WHERE k.key = knowledge_embeddings.key)"
)
_PRUNE_OTHERS = "DELETE FROM knowledge_embeddings WHERE model != ?"
_COUNT = "SELECT count(*) FROM knowledge_embeddings WHERE model = ?"


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class KnowledgeVectorStore:
    """Section keys and embeddings on a ``Store``'s database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def read_only(self) -> bool:
        """The database is open read-only: vectors made now live in memory only."""
        return self._db.read_only

    async def generation(self) -> int:
        """The knowledge tables' change counter (bumped by every change of the sections)."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _GENERATION)
        return int(rows[0][0]) if rows else 0

    async def section_keys(self) -> list[tuple[int, str]]:
        """(section rowid, content key) of every indexed section, by rowid."""
        async with self._db.read() as conn:
            return [(int(r[0]), str(r[1])) for r in await fetch_all(conn, _KEYS)]

    async def embeddings(self, model: str, keys: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """The stored (weight, vector bytes) of those keys that ``model`` has embedded."""
        out: dict[str, tuple[int, bytes]] = {}
        async with self._db.read() as conn:
            for part in _chunks(list(keys)):
                sql = (
                    "SELECT key, weight, vector FROM knowledge_embeddings "
                    f"WHERE model = ? AND key IN ({_marks(len(part))})"
                )
                for key, weight, vector in await fetch_all(conn, sql, [model, *part]):
                    out[str(key)] = (int(weight), bytes(vector))
        return out

    async def section_texts(self, rowids: Sequence[int]) -> list[SectionText]:
        """The indexed fields of these sections (those still there), by rowid."""
        out: list[SectionText] = []
        async with self._db.read() as conn:
            for part in _chunks(list(rowids)):
                rows = await fetch_all(conn, _TEXTS.format(marks=_marks(len(part))), part)
                out.extend((int(r[0]), r[1], r[2], r[3], r[4]) for r in rows)
        out.sort()
        return out

    async def put_embeddings(self, model: str, rows: Sequence[tuple[str, int, bytes]]) -> None:
        """Store (key, weight, vector bytes) for ``model``; a key another process stored
        meanwhile is kept (both computed the same text with the same model)."""
        if not rows:
            return
        async with self._db.write() as conn:
            await conn.executemany(_PUT, [(model, k, w, v) for k, w, v in rows])

    async def backfill_keys(self) -> int:
        """Give keys to sections indexed before keys existed (a database from before
        migration 4); returns how many were added. Cheap when nothing is missing."""
        async with self._db.read() as conn:
            have, want = (await fetch_all(conn, _TOTALS))[0]
        if int(have) >= int(want) or self._db.read_only:
            return 0
        async with self._db.write() as conn:
            docs = [int(r[0]) for r in await fetch_all(conn, _UNKEYED_DOCS)]
            rows: list[tuple[int, str]] = []
            for doc in docs:
                bounds = (doc << _SECTION_BITS, (doc + 1) << _SECTION_BITS)
                for rowid, title, tags, heading, body in await fetch_all(conn, _DOC_TEXTS, bounds):
                    rows.append((int(rowid), section_key(title, tags, heading, body)))
            await conn.executemany(_PUT_KEY, rows)
            if rows:
                await conn.execute(_BUMP)
        return len(rows)

    async def prune(self, model: str, *, other_models: bool = False) -> int:
        """Delete ``model``'s vectors that no section uses any more (and, with
        ``other_models``, every other model's); returns how many rows went."""
        async with self._db.write() as conn:
            cursor = await conn.execute(_PRUNE_UNUSED, (model,))
            gone = max(cursor.rowcount, 0)
            if other_models:
                cursor = await conn.execute(_PRUNE_OTHERS, (model,))
                gone += max(cursor.rowcount, 0)
        return gone

    async def count(self, model: str) -> int:
        """How many vectors ``model`` has stored."""
        async with self._db.read() as conn:
            return int((await fetch_all(conn, _COUNT, (model,)))[0][0])
