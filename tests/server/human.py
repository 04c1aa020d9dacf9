"""A person at the MCP client: an elicitation callback that answers the server's questions.

``Person("alice")`` accepts every question with its decision (approve unless told otherwise)
and records what it was asked, so tests can act as the human on ``by: human`` gates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp.types import ElicitRequestParams, ElicitResult


@dataclass
class Person:
    name: str = "alice"
    decision: str = "approve"
    feedback: str = ""
    action: str = "accept"  # or decline / cancel
    asked: list[str] = field(default_factory=list)

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(getattr(params, "message", ""))
        if self.action != "accept":
            return ElicitResult(action=self.action)  # type: ignore[arg-type]
        content: dict[str, Any] = {"decision": self.decision, "name": self.name}
        if self.feedback:
            content["feedback"] = self.feedback
        return ElicitResult(action="accept", content=content)
