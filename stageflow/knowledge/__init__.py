"""Project knowledge: Markdown guidelines, patterns, ADRs, decisions and past artifacts,
split into sections, indexed with SQLite FTS5 (BM25), searched by tool and injected into
stages within a token budget (``enrich``)."""
