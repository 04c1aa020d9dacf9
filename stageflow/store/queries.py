"""The store's SQL, prepared once as module constants (``sqlite3`` caches statements by text)."""

from __future__ import annotations

from stageflow.store.rows import (
    ARTIFACT_COLUMNS,
    ARTIFACT_META_COLUMNS,
    REQUEST_COLUMNS,
    RUN_COLUMNS,
    TERMINAL_STATUSES,
)

_TERMINAL = ", ".join(f"'{s}'" for s in TERMINAL_STATUSES)

# -- runs --------------------------------------------------------------------------------------

INSERT_RUN = (
    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)"
)
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
RUN_EXISTS = "SELECT 1 FROM runs WHERE run_id = ?"
SELECT_HEAD = "SELECT last_seq, head_hash, owner FROM runs WHERE run_id = ?"
RECENT_RUN_IDS = "SELECT run_id FROM runs ORDER BY created_at DESC, run_id DESC LIMIT ?"
LIST_RUNS = (  # {where} is empty or "WHERE status IN (?, ...)": placeholders only
    f"SELECT {RUN_COLUMNS} FROM runs{{where}} ORDER BY created_at DESC, run_id DESC LIMIT ?"
)
ACTIVE_RUN_IDS = (
    f"SELECT run_id FROM runs WHERE status NOT IN ({_TERMINAL}) ORDER BY created_at, run_id"
)

# Moving the head is guarded by the head the append was sealed against: the UPDATE matches no
# row when another writer appended first, which makes it the append's concurrency check.
MOVE_HEAD = (
    "UPDATE runs SET last_seq = ?, head_hash = ?, updated_at = ? "
    "WHERE run_id = ? AND last_seq = ? AND head_hash = ? AND (? IS NULL OR owner = ?)"
)
MOVE_HEAD_WITH_SUMMARY = (
    "UPDATE runs SET last_seq = ?, head_hash = ?, updated_at = ?, "
    "status = ?, spent_usd = ?, budget_usd = ? "
    "WHERE run_id = ? AND last_seq = ? AND head_hash = ? AND (? IS NULL OR owner = ?)"
)

# -- events ------------------------------------------------------------------------------------

INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, at, actor, type, payload, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_EVENTS = (
    "SELECT seq, at, actor, payload, prev_hash, hash FROM events "
    "WHERE run_id = ? AND seq > ? ORDER BY seq"
)

# -- artifacts ---------------------------------------------------------------------------------

INSERT_ARTIFACT = f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT_ARTIFACT = (
    f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND stage = ? AND name = ?"
)
SELECT_ARTIFACT_VERSION = _SELECT_ARTIFACT + " AND version = ?"
SELECT_ARTIFACT_LATEST = _SELECT_ARTIFACT + " ORDER BY version DESC LIMIT 1"
ARTIFACT_NAMES = "SELECT DISTINCT stage, name FROM artifacts WHERE run_id = ? ORDER BY stage, name"
ARTIFACT_HEADS = (  # the start of each artifact version of a run: previews without whole texts
    "SELECT stage, name, version, substr(content, 1, ?) FROM artifacts WHERE run_id = ?"
)
LIST_ARTIFACTS = (
    f"SELECT {ARTIFACT_META_COLUMNS} FROM artifacts WHERE run_id = ? ORDER BY stage, name, version"
)

# -- leases ------------------------------------------------------------------------------------

# Free, expired, already ours, or held by exactly the owner the caller proved dead: one UPDATE
# makes the check and the take atomic.
ACQUIRE_LEASE = (
    "UPDATE runs SET owner = ?, lease_expires_at = ? WHERE run_id = ? AND ("
    "owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ? "
    "OR owner = ? OR owner = ?)"
)
RENEW_LEASES = "UPDATE runs SET lease_expires_at = ? WHERE owner = ?"
HELD_BY = "SELECT run_id FROM runs WHERE owner = ? ORDER BY run_id"
RELEASE_LEASE = (
    "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE run_id = ? AND owner = ?"
)
WITHOUT_LIVE_LEASE = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE status NOT IN ({_TERMINAL}) AND ("
    "owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?) "
    "ORDER BY created_at, run_id"
)

# -- introspection -----------------------------------------------------------------------------

INSERT_REQUEST = (  # seq: the attempt's next request number, computed in the same statement
    f"INSERT INTO model_requests (run_id, stage, attempt, seq, at, {REQUEST_COLUMNS}) "
    "SELECT ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    "FROM model_requests WHERE run_id = ? AND stage = ? AND attempt = ? RETURNING seq"
)
FINISH_REQUEST = (
    "UPDATE model_requests SET model = ?, input_tokens = ?, output_tokens = ?, "
    "cache_write_5m_tokens = ?, cache_write_1h_tokens = ?, cache_read_tokens = ?, cost_usd = ?, "
    "priced = ?, request_id = ?, done = 1 "
    "WHERE run_id = ? AND stage = ? AND attempt = ? AND seq = ?"
)
RELEASE_REQUEST = (  # refused or errored: nothing billed, so no ledger row
    "DELETE FROM model_requests WHERE run_id = ? AND stage = ? AND attempt = ? AND seq = ?"
)
LIST_REQUESTS = (
    f"SELECT stage, attempt, seq, at, {REQUEST_COLUMNS} FROM model_requests WHERE run_id = ? "
    "ORDER BY at, stage, attempt, seq"
)
DATA_VERSION = "PRAGMA data_version"
SCHEMA = (  # each table followed by its indexes
    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY tbl_name, type DESC, name"
)

# -- costs across runs -------------------------------------------------------------------------

COST_TOTALS = (  # a request in flight (done = 0) counts its reservation, as the caps do
    "SELECT m.run_id, r.template, m.stage, m.model, COUNT(*), SUM(m.input_tokens), "
    "SUM(m.output_tokens), SUM(m.cache_read_tokens), "
    "SUM(m.cache_write_5m_tokens + m.cache_write_1h_tokens), "
    "SUM(CASE WHEN m.done THEN m.cost_usd ELSE MAX(m.cost_usd, m.reserved_usd) END) "
    "FROM model_requests m JOIN runs r ON r.run_id = m.run_id WHERE m.at >= ? "
    "GROUP BY m.run_id, m.stage, m.model"
)
RUN_CREATED_PAYLOAD = "SELECT payload FROM events WHERE run_id = ? AND seq = 1"
