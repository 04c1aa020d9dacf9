"""Agent definitions: parsing Claude Code style Markdown files, the layered registry, hot reload."""
