"""The agent definition model.

Same format as Claude Code's ``.claude/agents/*.md``: YAML front matter with ``name``,
``description``, ``tools`` (comma list or YAML list), ``model`` (``opus|sonnet|haiku|inherit`` or
a full model id) and our optional keys (``skills``, ``max_turns``, ``budget_usd``, ``knowledge``
...); the Markdown body is the system prompt. Unknown keys are kept in ``extra`` so a user's
existing Claude Code agents load as they are.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ConfigDict, Field

from stageflow.base import Model


class AgentDefinition(Model):
    """One agent, as loaded from a file (or built in)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    tools: list[str] = Field(default_factory=list)
    model: str = "inherit"
    max_turns: int | None = None
    budget_usd: float | None = None
    skills: list[str] = Field(default_factory=list)
    knowledge: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)  # unknown front-matter keys, kept as-is
    source: str | None = None  # file path, or None for synthesised definitions
    layer: str = "builtin"  # builtin | user | project-claude | project

    @property
    def content_hash(self) -> str:
        """SHA-256 over everything that affects behaviour (not where the file lives)."""
        body = self.model_dump(exclude={"source", "layer"}, mode="json")
        blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
