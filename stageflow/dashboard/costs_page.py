"""The costs page: the ledger across runs, by template, agent or model."""

from __future__ import annotations

from stageflow.dashboard.html import esc, money, when
from stageflow.engine.costs import GROUP_BY, CostReport

__all__ = ["render_costs"]


def render_costs(report: CostReport, since_text: str) -> str:
    links = " ".join(
        f'<a href="/costs?by={b}&amp;since={esc(since_text)}"'
        + (' class="current"' if b == report.by else "")
        + f">{b}</a>"
        for b in GROUP_BY
    )
    rows = "".join(
        f"<tr><td>{esc(g.key)}</td><td class=num>{g.runs}</td><td class=num>{g.requests}</td>"
        f"<td class=num>{g.input_tokens:,}</td><td class=num>{g.output_tokens:,}</td>"
        f"<td class=num>{g.cache_read_tokens:,}</td><td class=num>{money(g.cost_usd)}</td></tr>"
        for g in report.groups
    )
    head = (
        f"<tr><th>{esc(report.by)}</th><th>runs</th><th>requests</th><th>input tok</th>"
        "<th>output tok</th><th>cache read tok</th><th>cost</th></tr>"
    )
    return (
        f'<section id="costs"><h1>Costs since {esc(when(report.since))}</h1>'
        f"<p>by {links}</p>"
        f'<p>total <b id="costs-total">{money(report.total_usd)}</b> over {report.runs} runs, '
        f"{report.requests} model requests</p>"
        f"<table>{head}{rows}</table></section>"
    )
