"""The run list: runs that need a human first ("Needs you"), then the recent runs."""

from __future__ import annotations

from dataclasses import dataclass

from stageflow.dashboard.html import esc, money, status_badge, when
from stageflow.store.rows import RunRow

__all__ = ["Waiting", "render_runs"]


@dataclass(frozen=True)
class Waiting:
    """What one run waits for: the stage, approval or gate, the attempt under review."""

    stage: str
    kind: str
    attempt: int | None
    who: str = "a human"


def _row(run: RunRow, waits: list[Waiting]) -> str:
    what = "; ".join(
        f"{esc(w.kind)} of <b>{esc(w.stage)}</b>"
        + (f" (attempt {w.attempt})" if w.attempt else "")
        + f" by {esc(w.who)}"
        for w in waits
    )
    budget = f" / {money(run.budget_usd)}" if run.budget_usd is not None else ""
    return (
        f'<tr data-run="{esc(run.run_id)}">'
        f'<td><a href="/runs/{esc(run.run_id)}">{esc(run.run_id)}</a></td>'
        f"<td>{esc(run.template)}</td><td class=task>{esc(run.task[:120])}</td>"
        f"<td>{status_badge(run.status)}</td>"
        f"<td class=num>{money(run.spent_usd)}{budget}</td>"
        f"<td>{what or '-'}</td><td>{when(run.updated_at)}</td></tr>"
    )


def _table(rows: list[str]) -> str:
    head = (
        "<tr><th>run</th><th>template</th><th>task</th><th>state</th><th>cost</th>"
        "<th>waits for</th><th>updated</th></tr>"
    )
    return f"<table class=runs>{head}{''.join(rows)}</table>"


def render_runs(runs: list[RunRow], waiting: dict[str, list[Waiting]]) -> str:
    """The list's body: "Needs you" (runs with a stage waiting), then every other run."""
    needs = [r for r in runs if waiting.get(r.run_id)]
    rest = [r for r in runs if not waiting.get(r.run_id)]
    parts = ['<section id="needs-you"><h2>Needs you</h2>']
    if needs:
        parts.append(_table([_row(r, waiting[r.run_id]) for r in needs]))
    else:
        parts.append("<p class=muted>Nothing waits for a human.</p>")
    parts.append('</section><section id="recent"><h2>Recent runs</h2>')
    parts.append(_table([_row(r, []) for r in rest]) if rest else "<p class=muted>No runs.</p>")
    parts.append("</section>")
    return "".join(parts)
