"""MCP wiring (a later issue)."""
