"""Context enrichment: the knowledge sections most relevant to a stage attempt.

``KnowledgeSource`` is a ``ContextSource`` (``stageflow.subagents.context``): for each attempt
it searches the index with the run's task, the stage's description and the agent's role, and
offers the best sections, whole, within its token budget. The context builder puts them in the
brief and records each one in the attempt's manifest (kind ``knowledge``), which the engine
stores with the attempt, so status and the audit log show what was injected.

The budget comes from the stage's ``knowledge_tokens``, else the agent's ``knowledge`` front
matter; the filters from the agent, e.g.
``knowledge: {tokens: 1500, types: [guideline, adr], tags: [python]}`` (a document with any
of the tags qualifies), then from the project
config (``[knowledge] context_tokens``), else ``DEFAULT_KNOWLEDGE_TOKENS``; ``tokens: 0``
turns enrichment off for the agent. The knowledge budget is a share of the attempt's overall
project-context budget and never exceeds it. A failing search never fails the attempt: the
stage then runs without knowledge, and a warning says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stageflow.agents.definition import AgentDefinition
from stageflow.config import Settings
from stageflow.engine.runner import AttemptRequest
from stageflow.errors import NotFound
from stageflow.knowledge.index import Hit, KnowledgeIndex
from stageflow.knowledge.query import STOPWORDS as QUERY_STOPWORDS
from stageflow.subagents.context import ContextSection, estimate_tokens

__all__ = [
    "DEFAULT_KNOWLEDGE_TOKENS",
    "KnowledgeFilter",
    "KnowledgeSource",
    "enrichment_query",
    "knowledge_filter",
]

log = logging.getLogger(__name__)

DEFAULT_KNOWLEDGE_TOKENS = 2000
SEARCH_LIMIT = 12  # hits considered per attempt; sections are packed from these
PER_DOC = 2  # sections of one document at most, so one long guide cannot fill the budget
# words taken from each part of the brief (the search uses at most 24 terms)
TASK_TERMS, STAGE_TERMS, ROLE_TERMS = 14, 6, 4
MIN_TRUNCATED_TOKENS = 64  # a truncated section shorter than this is not worth sending

# Words of every brief that say nothing about its subject (the query module drops the
# common English ones).
ROLE_WORDS = frozenset(
    {"stage", "stages", "task", "tasks", "agent", "agents", "run", "runs", "work", "use"}
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class KnowledgeFilter:
    """What one agent receives: a token budget and optional type and tag filters."""

    tokens: int
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


def _config_tokens(settings: Settings) -> int:
    section = settings.extra.get("knowledge")
    value = section.get("context_tokens") if isinstance(section, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return DEFAULT_KNOWLEDGE_TOKENS


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if isinstance(value, list | tuple):
        return tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    return ()


# Injected by default: the project's own knowledge. Past runs' artifacts are found by
# ``knowledge_lookup`` ("how did we solve X last time") but not pushed into every brief: an
# agent opts in with ``knowledge: {types: [..., artifact]}``.
DEFAULT_TYPES = ("guideline", "pattern", "adr", "decision", "note")


def knowledge_filter(
    settings: Settings, agent: AgentDefinition | None, stage_tokens: int | None = None
) -> KnowledgeFilter:
    """The stage's ``knowledge_tokens`` over the agent's ``knowledge`` front matter over the
    config's budget (see the docstring).

    Values of the wrong type are ignored (the config's budget, no filter), never an error:
    a user's agent file must not stop a stage.
    """
    tokens = _config_tokens(settings)
    spec: Mapping[str, Any] = agent.knowledge if agent is not None else {}
    value = spec.get("tokens")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        tokens = value
    if stage_tokens is not None:
        tokens = stage_tokens
    types = _names(spec.get("types")) or DEFAULT_TYPES
    return KnowledgeFilter(tokens, types, _names(spec.get("tags")))


def _keywords(text: str, limit: int, seen: set[str]) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) < 3 or word.isdigit() or word in seen:
            continue
        if word in ROLE_WORDS or word in QUERY_STOPWORDS:
            continue
        seen.add(word)
        out.append(word)
        if len(out) >= limit:
            break
    return out


def enrichment_query(request: AttemptRequest) -> str:
    """The words to search with: the task's, then the stage goal's, then the agent role's.

    Each part gets a share of the terms the search uses, so a long task cannot crowd out
    what the stage and the agent are about.
    """
    agent = request.agent
    seen: set[str] = set()
    stage = f"{request.stage.description} {' '.join(request.stage.produces)}"
    words = [
        *_keywords(request.task[:4000], TASK_TERMS, seen),
        *_keywords(stage, STAGE_TERMS, seen),
        *_keywords(agent.description[:1000] if agent is not None else "", ROLE_TERMS, seen),
    ]
    return " ".join(words)


async def _section_text(index: KnowledgeIndex, hit: Hit) -> str:
    """The whole section the hit points at (its snippet if the document is gone since)."""
    try:
        section = await index.section(hit.doc_id, hit.section)
    except NotFound:
        return hit.snippet.strip()
    return section.text.strip()


def _truncate(text: str, tokens: int) -> str:
    limit = tokens * 4
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > limit // 2 else limit
    return text[:cut].rstrip() + "\n[... section truncated to fit the knowledge budget]"


class KnowledgeSource:
    """Top knowledge sections for an attempt (a ``ContextSource``; see the module docstring)."""

    def __init__(
        self, index: KnowledgeIndex, settings: Settings, *, limit: int = SEARCH_LIMIT
    ) -> None:
        self.index = index
        self.settings = settings
        self.limit = limit

    async def sections(self, request: AttemptRequest, budget_tokens: int) -> list[ContextSection]:
        """The best sections that fit the agent's knowledge budget, best first."""
        if request.agent is None:  # command stages get no context
            return []
        wanted = knowledge_filter(self.settings, request.agent, request.stage.knowledge_tokens)
        budget = min(wanted.tokens, budget_tokens)
        if budget <= 0:
            return []
        query = enrichment_query(request)
        if not query:
            return []
        try:
            hits = await self.index.search(
                query,
                types=wanted.types,
                tags=wanted.tags,
                limit=self.limit,
                sections_per_doc=PER_DOC,
            )
            return await self._pack(request, hits, budget)
        except Exception:  # the stage can do without knowledge; it must not fail for it
            log.warning(
                "run %s stage %s: knowledge enrichment failed; continuing without it",
                request.run_id,
                request.stage.id,
                exc_info=True,
            )
            return []

    async def _pack(
        self, request: AttemptRequest, hits: Sequence[Hit], budget: int
    ) -> list[ContextSection]:
        out: list[ContextSection] = []
        per_doc: dict[str, int] = {}
        left = budget
        for hit in hits:
            if left < MIN_TRUNCATED_TOKENS:
                break
            # this run's own artifacts reach the stage through ``needs``, not as knowledge
            if hit.run_id is not None and hit.run_id == request.run_id:
                continue
            if per_doc.get(hit.doc_id, 0) >= PER_DOC:
                continue
            text = await _section_text(self.index, hit)
            if not text:
                continue
            cost = estimate_tokens(text)
            if cost > left:
                if left < max(MIN_TRUNCATED_TOKENS, budget // 4):
                    continue  # a smaller section further down may still fit
                text = _truncate(text, left - 16)  # room for the truncation note
                cost = estimate_tokens(text)
            per_doc[hit.doc_id] = per_doc.get(hit.doc_id, 0) + 1
            out.append(
                ContextSection(
                    ref=f"{hit.doc_id}#L{hit.line_start}-{hit.line_end}",
                    title=_title(hit),
                    text=text,
                    kind="knowledge",
                )
            )
            left -= cost
        return out


def _title(hit: Hit) -> str:
    heading = f" > {hit.heading}" if hit.heading and hit.heading != hit.title else ""
    status = f", {hit.status}" if hit.status else ""
    return f"{hit.title}{heading} [{hit.type}{status}]"
