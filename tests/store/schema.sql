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
CREATE TRIGGER knowledge_docs_ad AFTER DELETE ON knowledge_docs BEGIN
    DELETE FROM knowledge_fts
    WHERE rowid >= (old.doc_rowid << 20) AND rowid < ((old.doc_rowid + 1) << 20);
END;
CREATE TRIGGER knowledge_docs_ad_keys AFTER DELETE ON knowledge_docs BEGIN
    DELETE FROM knowledge_section_keys
    WHERE section_rowid >= (old.doc_rowid << 20) AND section_rowid < ((old.doc_rowid + 1) << 20);
END;
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
CREATE TABLE knowledge_embeddings (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    weight INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID;
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
CREATE TABLE 'knowledge_fts_config'(k PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE 'knowledge_fts_content'(id INTEGER PRIMARY KEY, c0, c1, c2, c3, c4, c5, c6);
CREATE TABLE 'knowledge_fts_data'(id INTEGER PRIMARY KEY, block BLOB);
CREATE TABLE 'knowledge_fts_docsize'(id INTEGER PRIMARY KEY, sz BLOB);
CREATE TABLE 'knowledge_fts_idx'(segid, term, pgno, PRIMARY KEY(segid, term)) WITHOUT ROWID;
CREATE TABLE knowledge_section_keys (
    section_rowid INTEGER PRIMARY KEY,
    key TEXT NOT NULL
);
CREATE INDEX knowledge_section_keys_key ON knowledge_section_keys(key);
CREATE TABLE knowledge_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
CREATE TABLE knowledge_tags (
    tag TEXT NOT NULL,
    doc_rowid INTEGER NOT NULL REFERENCES knowledge_docs(doc_rowid) ON DELETE CASCADE,
    PRIMARY KEY (tag, doc_rowid)
) WITHOUT ROWID;
CREATE INDEX knowledge_tags_doc ON knowledge_tags(doc_rowid);
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
    request_id TEXT, reserved_usd REAL NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, stage, attempt, seq)
);
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
CREATE INDEX runs_created_at ON runs(created_at);
CREATE INDEX runs_owner ON runs(owner);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL);
