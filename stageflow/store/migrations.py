"""Numbered schema migrations, recorded in the database they changed.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the row that
records it, so a crash leaves either the whole migration or none of it. Taking the write lock
before re-reading the applied versions makes two processes opening a fresh database at the same
time safe: the second one finds the migration recorded and skips it.

Only add migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from stageflow.errors import StageflowError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_0001_INITIAL = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    template TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    owner TEXT,
    lease_expires_at REAL,
    spent_usd REAL NOT NULL DEFAULT 0,
    budget_usd REAL,
    runner TEXT NOT NULL
);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_created_at ON runs(created_at);
CREATE INDEX runs_owner ON runs(owner);

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    content TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, stage, name, version)
);
"""

# The cost ledger: one row per model request, written as soon as the request returns, so the
# spend of an attempt that fails, is cancelled or dies with its process is never lost. Outside
# the hash-chained event log on purpose: a request is paid for whether or not its attempt's
# outcome is ever recorded.
_0002_MODEL_REQUESTS = """
CREATE TABLE model_requests (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    model_requested TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_write_5m_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    priced INTEGER NOT NULL,
    request_id TEXT,
    PRIMARY KEY (run_id, stage, attempt, seq)
);
"""

# The knowledge base: documents (files and indexed run artifacts), their tags, the state of
# each source file for incremental sync, and an FTS5 index with one row per section. A
# section's FTS rowid is ``doc_rowid << 20 | section index``: a document's sections are one
# rowid range, so replacing or deleting a document is a range delete (the trigger), and a hit
# finds its document through the integer primary key.
_0003_KNOWLEDGE = """
CREATE TABLE knowledge_docs (
    doc_rowid INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    type TEXT NOT NULL,
    tags TEXT NOT NULL,
    status TEXT,
    path TEXT,
    body TEXT NOT NULL,
    body_line INTEGER NOT NULL,
    run_id TEXT,
    stage TEXT,
    version INTEGER,
    sections INTEGER NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE INDEX knowledge_docs_path ON knowledge_docs(path);
CREATE INDEX knowledge_docs_type ON knowledge_docs(type);

CREATE TABLE knowledge_tags (
    tag TEXT NOT NULL,
    doc_rowid INTEGER NOT NULL REFERENCES knowledge_docs(doc_rowid) ON DELETE CASCADE,
    PRIMARY KEY (tag, doc_rowid)
) WITHOUT ROWID;
CREATE INDEX knowledge_tags_doc ON knowledge_tags(doc_rowid);

CREATE TABLE knowledge_files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    doc_id TEXT,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX knowledge_files_doc ON knowledge_files(doc_id);

CREATE VIRTUAL TABLE knowledge_fts USING fts5(
    title, tags, meta, heading, body, line_start UNINDEXED, line_end UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER knowledge_docs_ad AFTER DELETE ON knowledge_docs BEGIN
    DELETE FROM knowledge_fts
    WHERE rowid >= (old.doc_rowid << 20) AND rowid < ((old.doc_rowid + 1) << 20);
END;
"""

# Dense retrieval next to FTS5: each section's content key (sha256 of the title, tags, heading
# and body it was indexed with), embeddings by (model, key), so a section whose text did not
# change keeps its vector when its document is re-indexed under new rowids, and a model change
# simply finds no vectors for the new model; and a generation counter that every change of the
# knowledge tables bumps, so a process holding vectors in memory knows when to re-read them.
# A request is recorded when it is sent, with the worst case the caps reserved for it
# (``done`` 0), and completed with its usage when it returns (``done`` 1): a process killed in
# between leaves the reservation behind, which counts as spent.
_0005_REQUEST_RESERVATIONS = """
ALTER TABLE model_requests ADD COLUMN reserved_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE model_requests ADD COLUMN done INTEGER NOT NULL DEFAULT 1;
"""

_0004_KNOWLEDGE_VECTORS = """
CREATE TABLE knowledge_section_keys (
    section_rowid INTEGER PRIMARY KEY,
    key TEXT NOT NULL
);
CREATE INDEX knowledge_section_keys_key ON knowledge_section_keys(key);

CREATE TABLE knowledge_embeddings (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    weight INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID;

CREATE TABLE knowledge_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO knowledge_state (id, generation) VALUES (1, 0);

CREATE TRIGGER knowledge_docs_ad_keys AFTER DELETE ON knowledge_docs BEGIN
    DELETE FROM knowledge_section_keys
    WHERE section_rowid >= (old.doc_rowid << 20) AND section_rowid < ((old.doc_rowid + 1) << 20);
END;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _0001_INITIAL),
    Migration(2, "model_requests", _0002_MODEL_REQUESTS),
    Migration(3, "knowledge", _0003_KNOWLEDGE),
    Migration(4, "knowledge_vectors", _0004_KNOWLEDGE_VECTORS),
    Migration(5, "request_reservations", _0005_REQUEST_RESERVATIONS),
)

_CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)
_SELECT_APPLIED = "SELECT version FROM schema_migrations ORDER BY version"
_RECORD = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (``sqlite3.complete_statement`` knows triggers)."""
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            stmt = current.strip()
            if stmt.rstrip(";").strip():
                statements.append(stmt)
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current.strip()[:80]!r}")
    return statements


async def _applied(conn: aiosqlite.Connection) -> set[int]:
    return {int(r[0]) for r in await conn.execute_fetchall(_SELECT_APPLIED)}


async def apply_migrations(
    conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply the migrations this database lacks, in order; return the versions applied.

    Raises ``StageflowError`` when the database records a version newer than any we know, since
    writing to a schema we do not understand could corrupt it.
    """
    await conn.execute(_CREATE_MIGRATIONS_TABLE)
    newest_known = max((m.version for m in migrations), default=0)
    applied_now: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        applied = await _applied(conn)
        _check_not_newer(applied, newest_known)
        if migration.version in applied:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if migration.version in await _applied(conn):  # another process was quicker
                await conn.execute("ROLLBACK")
                continue
            for statement in split_statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(_RECORD, (migration.version, migration.name, time.time()))
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied_now.append(migration.version)
    _check_not_newer(await _applied(conn), newest_known)
    return applied_now


def _check_not_newer(applied: set[int], newest_known: int) -> None:
    newest = max(applied, default=0)
    if newest > newest_known:
        raise StageflowError(
            f"database schema version {newest} is newer than this stageflow supports "
            f"({newest_known}); upgrade stageflow"
        )


async def check_current(
    conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS
) -> None:
    """For a database opened read-only: raise ``StageflowError`` unless every known migration
    is applied (an older schema cannot be upgraded without writing)."""
    try:
        applied = await _applied(conn)
    except sqlite3.OperationalError as exc:  # no schema_migrations table: not ours, or empty
        raise StageflowError(f"no stageflow schema in this database ({exc})") from exc
    newest_known = max((m.version for m in migrations), default=0)
    _check_not_newer(applied, newest_known)
    missing = sorted({m.version for m in migrations} - applied)
    if missing:
        raise StageflowError(
            f"the database schema is at version {max(applied, default=0)} and this stageflow "
            f"needs {newest_known}; it cannot be upgraded while the database is read-only: run "
            "a stageflow command with write access to it once"
        )
