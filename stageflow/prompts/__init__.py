"""MCP prompts and the built-in agent definitions (``agents/*.md``, package data)."""
