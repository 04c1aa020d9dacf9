"""The records the knowledge tables read and write (rows as tuples, mapped here).

``stageflow.knowledge`` builds ``KnowledgeDocRow``/``KnowledgeSectionRow`` from Markdown and
hands them over in a ``KnowledgeChange``; searches come back as ``KnowledgeHitRow``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: Columns of ``knowledge_docs`` that ``doc_from_row`` reads, in order.
DOC_COLUMNS = (
    "doc_id, title, type, tags, status, path, body, body_line, run_id, stage, version, sections"
)


@dataclass(frozen=True)
class KnowledgeDocRow:
    """A document as stored. ``keywords`` are extra searchable words (type, status, task)."""

    doc_id: str
    title: str
    type: str
    tags: tuple[str, ...]
    status: str | None
    path: str | None
    body: str
    body_line: int
    run_id: str | None = None
    stage: str | None = None
    version: int | None = None  # artifacts: an older version never replaces a newer one
    keywords: str = ""


@dataclass(frozen=True)
class KnowledgeSectionRow:
    """One section of a document, as indexed."""

    heading: str
    line_start: int
    line_end: int
    text: str


@dataclass(frozen=True)
class KnowledgeFileRow:
    """What the index last saw of a source file (``doc_id`` is the id the file asked for)."""

    path: str
    root: str
    doc_id: str | None
    mtime_ns: int
    size: int
    sha256: str


@dataclass
class KnowledgeChange:
    """Everything one transaction does to the knowledge tables, applied in this order:

    1. ``replace_all_files``: drop every document that came from a file, and all file rows;
    2. delete the documents at ``delete_paths`` and those named in ``delete_docs``;
    3. put each document with its sections (replacing a document with the same id and path);
    4. upsert ``files`` and forget ``forget_files``.
    """

    put: list[tuple[KnowledgeDocRow, list[KnowledgeSectionRow]]] = field(default_factory=list)
    delete_docs: list[str] = field(default_factory=list)
    delete_paths: list[str] = field(default_factory=list)
    files: list[KnowledgeFileRow] = field(default_factory=list)
    forget_files: list[str] = field(default_factory=list)
    replace_all_files: bool = False


@dataclass(frozen=True)
class Refusal:
    """A put that was not applied: the id belongs to a document from another source."""

    doc_id: str
    path: str | None
    owner: str | None  # the path (None: an artifact) that holds the id


@dataclass(frozen=True)
class ChangeResult:
    """Document ids added, updated and removed by one change, and the puts refused."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]
    refused: tuple[Refusal, ...]
    stale: tuple[str, ...] = ()  # artifact puts older than the stored version, skipped


@dataclass(frozen=True)
class KnowledgeHitRow:
    """One matching section with its document's fields."""

    doc_id: str
    title: str
    type: str
    tags: tuple[str, ...]
    status: str | None
    path: str | None
    run_id: str | None
    stage: str | None
    section: int
    heading: str
    line_start: int
    line_end: int
    score: float  # bm25: lower is better
    snippet: str
    rowid: int = 0  # the section's FTS rowid (for ``snippets``)


def hit_from_row(row: tuple[Any, ...]) -> KnowledgeHitRow:
    """A search row (the columns of the store's search SELECT) -> KnowledgeHitRow."""
    return KnowledgeHitRow(
        doc_id=row[0],
        title=row[1],
        type=row[2],
        tags=tuple(json.loads(row[3])),
        status=row[4],
        path=row[5],
        run_id=row[6],
        stage=row[7],
        section=int(row[8]),
        heading=row[9],
        line_start=int(row[10]),
        line_end=int(row[11]),
        score=float(row[12]),
        snippet=row[13],
        rowid=int(row[14]),
    )


def doc_from_row(row: tuple[Any, ...]) -> KnowledgeDocRow:
    """A ``knowledge_docs`` row (DOC_COLUMNS) -> KnowledgeDocRow."""
    return KnowledgeDocRow(
        doc_id=row[0],
        title=row[1],
        type=row[2],
        tags=tuple(json.loads(row[3])),
        status=row[4],
        path=row[5],
        body=row[6],
        body_line=int(row[7]),
        run_id=row[8],
        stage=row[9],
        version=row[10],
    )


def section_key(title: str, tags: str, heading: str, body: str) -> str:
    """The content key of an indexed section: the SHA-256 of every field its vector is made
    from, so an unchanged section keeps its vector whatever rowid it is stored under."""
    digest = hashlib.sha256()
    for part in (title, tags, heading, body):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()
