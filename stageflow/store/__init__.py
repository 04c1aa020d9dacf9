"""SQLite persistence: the only importer of aiosqlite."""
