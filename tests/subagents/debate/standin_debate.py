"""The stand-in scripted as debaters and as the orchestrator.

Participants (requests offering the ``statement`` tool) open on their role's stance and agree
on "adopt with safeguards" from round 2; the orchestrator (the ``answer`` tool) judges
agreement from the positions in its prompt, or answers the template question from
``template_answers``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.standin.wire import Json, Reply, error_reply, message, text_of, tool_use_block

OPENING = {"proponent": "adopt", "critic": "reject", "domain expert": "adopt"}
_WHO = re.compile(r"You are (\S+), the ([a-z' ]+?)\.")
_ROUND = re.compile(r"round (\d+) of at most")
_POSITION = re.compile(r"^## (\S+) \(position: ([^)]*)\)", re.M)
_THRESHOLD = re.compile(r"threshold is ([0-9]+(?:\.[0-9]+)?)")


def tools_of(body: Json) -> list[str]:
    return [str(t.get("name")) for t in body.get("tools") or []]


def _prompt(body: Json) -> str:
    return text_of((body.get("messages") or [{}])[0].get("content"))


class DebateStandIn:
    """A ``respond`` hook (see the module docstring); ``down`` makes the orchestrator's
    requests answer 529."""

    def __init__(self, template_answers: Mapping[str, str] | None = None) -> None:
        self.template_answers = dict(template_answers or {})
        self.down = False
        self.invalid = False

    def __call__(self, body: Json) -> Reply | Json | None:
        names = tools_of(body)
        if "statement" in names:
            return self._statement(body)
        if "answer" in names:
            if self.down:
                return error_reply(529, "overloaded_error", "Overloaded", None)
            return self._answer(body)
        return None

    def _statement(self, body: Json) -> Json:
        prompt = _prompt(body)
        who = _WHO.search(prompt)
        rnd = _ROUND.search(prompt)
        label, role = (who.group(1), who.group(2)) if who else ("?", "participant")
        round_no = int(rnd.group(1)) if rnd else 1
        stance = OPENING.get(role, "adopt") if round_no == 1 else "adopt with safeguards"
        args = {
            "position": stance,
            "statement": f"{label} as {role} in round {round_no}: {stance}, because " * 8,
        }
        return message([tool_use_block(f"toolu_{label}_{round_no}", "statement", args)], "tool_use")

    def _answer(self, body: Json) -> Json:
        prompt = _prompt(body)
        if prompt.startswith("Task:"):
            task = prompt.splitlines()[0][5:].strip()
            answer: dict[str, Any] = {
                "template": self.template_answers.get(task, "feature_development"),
                "reason": "scripted by the stand-in",
            }
        else:
            positions = dict(_POSITION.findall(prompt))
            threshold = float(_THRESHOLD.search(prompt).group(1))  # type: ignore[union-attr]
            values = list(positions.values())
            top = max(set(values), key=values.count) if values else ""
            agreement = values.count(top) / max(1, len(values))
            answer = {
                "agreement": agreement,
                "positions": positions,
                "open_points": [] if agreement >= threshold else ["whether to adopt at all"],
                "action": "conclude" if agreement >= threshold else "continue",
                "reason": f"stand-in moderator: {agreement:.2f} agree",
                "decision": top,
            }
        if self.invalid:
            answer = {"agreement": 7}
        return message([tool_use_block("toolu_answer", "answer", answer)], "tool_use")
