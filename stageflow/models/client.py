"""The model-client seam: what the tool-use loop sends to a model, and what it gets back.

The loop (``stageflow.subagents.tool_loop``) speaks only these plain types, so unit tests drive
it with scripted fakes (``FunctionModel``-style) and the one module that imports ``anthropic``
(``stageflow.models.anthropic``) converts them to and from the Messages API.

Content blocks are plain dicts in the Messages API's wire shape (``{"type": "text", "text":
...}``, ``{"type": "tool_use", "id", "name", "input"}``, ``{"type": "tool_result", ...}``), so an
assistant reply can be appended to the conversation unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Block = dict[str, Any]


@dataclass(frozen=True)
class ModelCall:
    """One Messages API request.

    ``system`` is a list of text blocks and ``tools`` a list of tool definitions; the caller
    places ``cache_control`` on the stable prefix (the last system block and the last tool).
    """

    model: str
    system: list[Block]
    tools: list[Block]
    messages: list[dict[str, Any]]
    max_tokens: int


@dataclass(frozen=True)
class RawUsage:
    """Token counts exactly as the provider reported them for one request."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0


@dataclass(frozen=True)
class ModelReply:
    """One Messages API response."""

    content: list[Block]
    stop_reason: str | None
    model: str  # the model that answered
    usage: RawUsage = field(default_factory=RawUsage)
    request_id: str | None = None

    def tool_uses(self) -> list[Block]:
        """The ``tool_use`` blocks, in order."""
        return [b for b in self.content if b.get("type") == "tool_use"]

    def text(self) -> str:
        """All text blocks joined."""
        return "\n".join(str(b.get("text", "")) for b in self.content if b.get("type") == "text")


class ModelClient(Protocol):
    """Sends one request. Raises ``stageflow.errors.ModelError`` (already mapped) on failure.

    A client may also offer ``async count_tokens(call) -> int | None``, the provider's count
    of a request's input tokens; the loop uses it near a budget cap (``subagents/spend.py``).
    """

    async def send(self, call: ModelCall) -> ModelReply: ...

    async def aclose(self) -> None: ...
