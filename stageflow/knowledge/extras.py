"""The knowledge base as runner extras: every agent attempt gets the project knowledge that fits
its task (``KnowledgeSource``), and API-runner attempts a ``knowledge_lookup`` tool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stageflow.config import Settings
from stageflow.knowledge.index import KnowledgeIndex

if TYPE_CHECKING:
    from stageflow.subagents.select import ExtrasFactory, RunnerExtras


def knowledge_extras(index: KnowledgeIndex, settings: Settings) -> ExtrasFactory:
    """The factory ``make_runner`` calls when it builds the first model runner (what it
    imports, the tool loop among them, stays off the server's start-up path)."""

    def build() -> RunnerExtras:
        from stageflow.knowledge.enrich import KnowledgeSource
        from stageflow.knowledge.lookup_tool import knowledge_lookup_tool
        from stageflow.subagents.select import RunnerExtras

        return RunnerExtras(
            sources=[KnowledgeSource(index, settings)],
            tools=[knowledge_lookup_tool(index)],
        )

    return build
