"""Project knowledge: documents, FTS5 search, context enrichment (a later issue)."""
