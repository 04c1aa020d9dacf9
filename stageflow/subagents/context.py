"""The context builder: everything a fresh-context attempt sees, and a record of it.

Each attempt starts a new conversation containing only:

- the agent's system prompt (plus a short, stable stageflow preamble);
- a stage brief: the run's task and inputs, this stage's goal, what it must produce and how to
  finish (``submit_result`` for the API runner, a closing JSON block for the Claude Code runner);
- the artifacts named in ``needs`` (never upstream conversations);
- on a rework, the reviewer's feedback and this stage's previous artifacts;
- project context from ``ContextSource``s within a token budget (the project's ``CLAUDE.md`` /
  ``AGENTS.md`` today; the knowledge base plugs in through the same seam).

``build_context`` is pure apart from the sources it is given, and returns the manifest the
engine stores with the attempt (refs, sizes, estimated tokens), so status and the audit show
what went in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from stageflow.engine.runner import AttemptRequest

FinishMode = Literal["tool", "json"]
ItemKind = Literal["system", "brief", "artifact", "previous", "feedback", "project", "knowledge"]

DEFAULT_CONTEXT_TOKENS = 4000  # project context and knowledge, per attempt


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters per token), the same rule the engine uses."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class ContextSection:
    """One piece of optional project context offered by a source."""

    ref: str  # stable id shown in the manifest, e.g. ``CLAUDE.md`` or a knowledge doc id
    title: str
    text: str
    kind: Literal["project", "knowledge"] = "project"


class ContextSource(Protocol):
    """Offers project context for an attempt, best first; the builder packs what fits."""

    def sections(self, request: AttemptRequest, budget_tokens: int) -> list[ContextSection]: ...


@dataclass(frozen=True)
class ContextItem:
    """One entry of the manifest."""

    kind: ItemKind
    ref: str
    chars: int
    tokens_est: int
    truncated: bool = False


@dataclass(frozen=True)
class StageContext:
    """The first request of an attempt: system prompt, brief, and what went into them."""

    system: str
    brief: str
    items: list[ContextItem] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        """JSON-ready record of what went in, stored with the attempt."""
        return {
            "items": [
                {
                    "kind": i.kind,
                    "ref": i.ref,
                    "chars": i.chars,
                    "tokens_est": i.tokens_est,
                    **({"truncated": True} if i.truncated else {}),
                }
                for i in self.items
            ],
            "tokens_est": sum(i.tokens_est for i in self.items),
        }


def build_context(
    request: AttemptRequest,
    *,
    finish: FinishMode,
    sources: Sequence[ContextSource] = (),
    budget_tokens: int = DEFAULT_CONTEXT_TOKENS,
) -> StageContext:
    """Build the system prompt and stage brief for one attempt (see the module docstring)."""
    raise NotImplementedError  # written by the lead
