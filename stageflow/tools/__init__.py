"""Thin MCP tool adapters (a later issue)."""
