"""The pure rules of a debate: where it stands, what a turn sees, how rounds end.

A debate's progress is read from its journal (the ``debate_turn`` and ``debate_verdict``
events of the stage since its last fresh start): a resumed attempt skips every turn that was
logged and continues at the first one that was not. Each participant turn is a fresh context:
the question, the stage's ``needs``, and the previous round's statements (condensed when they
exceed the debate's ``summary_tokens``), never the whole transcript.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from stageflow import events as ev
from stageflow.engine.runner import InputArtifact, JournalEntry
from stageflow.workflows.debate_spec import DebateSpec, Participant

__all__ = ["Progress", "enforce", "previous_round_text", "turn_brief"]

Action = Literal["continue", "conclude", "redirect"]

ROLE_BRIEFS = {
    "proponent": "Argue for the strongest workable option; concede real weaknesses.",
    "critic": "Find the weaknesses, risks and hidden costs; propose what would fix them.",
    "devils_advocate": "Argue the opposite of the emerging view, to test it; say when it holds.",
    "domain_expert": "Judge from deep expertise in the domain: facts, precedent, constraints.",
    "participant": "Give your independent, reasoned view.",
}


@dataclass
class Progress:
    """The debate so far: turns by round, verdicts by round."""

    turns: dict[int, dict[str, ev.DebateTurn]] = field(default_factory=dict)
    verdicts: dict[int, ev.DebateVerdict] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Sequence[JournalEntry]) -> Progress:
        out = cls()
        for e in entries:
            if isinstance(e, ev.DebateTurn):
                out.turns.setdefault(e.round, {}).setdefault(e.participant, e)
            else:
                out.verdicts.setdefault(e.round, e)
        return out

    def add(self, entry: JournalEntry) -> None:
        if isinstance(entry, ev.DebateTurn):
            self.turns.setdefault(entry.round, {})[entry.participant] = entry
        else:
            self.verdicts[entry.round] = entry

    def round_turns(self, round_no: int, order: Sequence[Participant]) -> list[ev.DebateTurn]:
        """The turns of a round in the participants' order."""
        got = self.turns.get(round_no, {})
        return [got[p.label] for p in order if p.label in got]

    def final_positions(self, order: Sequence[Participant]) -> dict[str, ev.DebateTurn]:
        """Each participant's latest turn."""
        out: dict[str, ev.DebateTurn] = {}
        for r in sorted(self.turns):
            for p in order:
                t = self.turns[r].get(p.label)
                if t is not None:
                    out[p.label] = t
        return out


def enforce(proposed: Action, round_no: int, spec: DebateSpec) -> Action:
    """What happens after ``round_no`` whatever the moderator proposed: no conclusion before
    ``rounds.min``, a conclusion at ``rounds.max``."""
    if round_no >= spec.rounds.max:
        return "conclude"
    if round_no < spec.rounds.min and proposed == "conclude":
        return "continue"
    return proposed


def _condense(text: str, chars: int) -> str:
    """``text`` cut to about ``chars`` at a sentence or word boundary, saying so."""
    if len(text) <= chars:
        return text
    cut = text[:chars]
    stop = max(cut.rfind(". "), cut.rfind("\n"))
    cut = cut[: stop + 1] if stop > chars // 2 else cut.rsplit(" ", 1)[0]
    return f"{cut.rstrip()} [condensed: {len(cut)} of {len(text)} characters]"


def previous_round_text(turns: Sequence[ev.DebateTurn], budget_tokens: int) -> str:
    """The previous round's statements, each condensed to its share of ``budget_tokens``
    (4 characters a token) when together they exceed it."""
    if not turns:
        return ""
    total = sum(len(t.statement) for t in turns)
    share = math.floor(budget_tokens * 4 / len(turns))
    parts = []
    for t in turns:
        body = t.statement if total <= budget_tokens * 4 else _condense(t.statement, share)
        parts.append(f"### {t.participant} ({t.role}): {t.position or 'unstated'}\n{body}")
    return "\n\n".join(parts)


def _fenced(a: InputArtifact) -> str:
    fence = "````" if "```" in a.content else "```"
    return f"### {a.stage}.{a.name} (v{a.version})\n{fence}\n{a.content}\n{fence}"


def turn_brief(
    *,
    spec: DebateSpec,
    question: str,
    participant: Participant,
    round_no: int,
    needs: Sequence[InputArtifact],
    previous: Sequence[ev.DebateTurn],
    verdict: ev.DebateVerdict | None,
) -> str:
    """The user message of one participant turn (see the module docstring)."""
    kind = "opening argument" if round_no == 1 else "counter-argument"
    lines = [
        f"# Debate, round {round_no} of at most {spec.rounds.max}: your {kind}",
        f"You are {participant.label}, the {participant.role.replace('_', ' ')}. "
        + ROLE_BRIEFS.get(participant.role, ROLE_BRIEFS["participant"]),
        f"\n## Question\n{question}",
    ]
    if needs:
        lines.append("\n## Material\n" + "\n\n".join(_fenced(a) for a in needs))
    if previous:
        lines.append(
            f"\n## Round {round_no - 1} statements\n"
            + previous_round_text(previous, spec.summary_tokens)
        )
    if verdict is not None:
        if verdict.open_points:
            lines.append(
                "\n## Open points from the moderator\n"
                + "\n".join(f"- {p}" for p in verdict.open_points)
            )
        if verdict.action == "redirect" and verdict.redirect:
            lines.append(f"\n## The moderator refocuses the debate on\n{verdict.redirect}")
    lines.append(
        "\n## How to answer\nCall the `statement` tool once: `position` is your stance in a "
        "few words (e.g. 'adopt', 'reject', 'adopt with safeguards'); `statement` is your "
        "argument in at most 300 words. Answer the others' strongest points by name. Change "
        "your position only if an argument convinced you, and say which."
    )
    return "\n".join(lines)
