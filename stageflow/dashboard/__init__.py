"""The live dashboard: a small Starlette app over ``Service`` (pages, SSE, decisions)."""
