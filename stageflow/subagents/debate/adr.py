"""The debate's decision record, in ADR form: context, options, decision, consequences, dissent."""

from __future__ import annotations

from collections.abc import Sequence

from stageflow import events as ev
from stageflow.engine.runner import InputArtifact
from stageflow.subagents.orchestrator.questions import normalise_position

__all__ = ["render_adr", "title_of"]


def title_of(question: str) -> str:
    """A short title: the question's first line, at most 80 characters."""
    first = (question.strip().splitlines() or ["Debate decision"])[0].strip()
    return first if len(first) <= 80 else first[:77].rstrip() + "..."


def _excerpt(text: str, chars: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 3].rstrip() + "..."


def render_adr(
    *,
    question: str,
    needs: Sequence[InputArtifact],
    final: dict[str, ev.DebateTurn],
    verdicts: Sequence[ev.DebateVerdict],
    offline: bool,
) -> str:
    """The ADR Markdown. The decision is the last verdict's majority position; participants
    whose last position differs are the dissent."""
    last = verdicts[-1] if verdicts else None
    by_stance: dict[str, list[ev.DebateTurn]] = {}
    for turn in final.values():
        by_stance.setdefault(normalise_position(turn.position) or "(unstated)", []).append(turn)
    ranked = sorted(by_stance.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    chosen = ranked[0][0] if ranked else "(none)"
    lines = [f"# {title_of(question)}", ""]
    if offline:
        lines += ["> offline run: scripted statements, no model was called", ""]
    lines += ["## Status", "", "accepted" if last and last.agreement >= 0.5 else "proposed", ""]
    lines += ["## Context", "", question.strip(), ""]
    if needs:
        lines.append("Material considered: " + ", ".join(f"{a.stage}.{a.name}" for a in needs))
        lines.append("")
    rounds = len(verdicts)
    who = ", ".join(f"{t.participant} ({t.role}, {t.model or '?'})" for t in final.values())
    lines.append(f"Debated over {rounds} round(s) by {len(final)} participants: {who}.")
    lines += ["", "## Options", ""]
    for stance, turns in ranked:
        who = ", ".join(t.participant for t in turns)
        lines.append(f"- **{stance}** (held by {who}): {_excerpt(turns[0].statement, 300)}")
    lines += ["", "## Decision", ""]
    agreement = f"{last.agreement:.2f}" if last else "n/a"
    lines.append(f"**{chosen}** (agreement {agreement}).")
    if last is not None:
        lines.append("")
        lines.append(f"Moderator ({last.decided_by}): {last.reason}")
    lines += ["", "## Consequences", ""]
    open_points = last.open_points if last else []
    if open_points:
        lines += [f"- Still open: {p}" for p in open_points]
    for turn in by_stance.get(chosen, [])[:2]:
        lines.append(f"- From {turn.participant}: {_excerpt(turn.statement, 300)}")
    lines += ["", "## Dissent", ""]
    dissent = [t for s, ts in ranked if s != chosen for t in ts]
    if not dissent:
        lines.append("None recorded: every participant ended on the decision.")
    for turn in dissent:
        lines.append(f"- **{turn.participant}** ({turn.position}): {_excerpt(turn.statement)}")
    return "\n".join(lines) + "\n"
