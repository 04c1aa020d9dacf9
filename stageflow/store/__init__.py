"""SQLite persistence: the only importer of aiosqlite.

``Store`` keeps runs, their hash-chained event logs, artifacts and run leases in one SQLite
file (WAL mode, numbered migrations in ``migrations.py``).
"""

from stageflow.store.rows import ArtifactMeta, ArtifactRecord, NewArtifact, RunRow, RunSummary
from stageflow.store.store import Store

__all__ = ["ArtifactMeta", "ArtifactRecord", "NewArtifact", "RunRow", "RunSummary", "Store"]
