"""SQLite persistence: the only importer of aiosqlite.

``Store`` keeps runs, their hash-chained event logs and artifacts in one SQLite file (WAL mode,
numbered migrations in ``migrations.py``); ``store.ledger`` the cost of every model request,
``store.leases`` which process executes a run, ``store.knowledge`` the knowledge index.
"""

from stageflow.store.rows import ArtifactMeta, ArtifactRecord, NewArtifact, RunRow, RunSummary
from stageflow.store.store import Store

__all__ = ["ArtifactMeta", "ArtifactRecord", "NewArtifact", "RunRow", "RunSummary", "Store"]
