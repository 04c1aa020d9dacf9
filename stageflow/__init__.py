"""stageflow: run big coding tasks as durable workflows of fresh-context subagents."""

__version__ = "0.1.0"
