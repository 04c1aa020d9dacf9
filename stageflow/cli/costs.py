"""``stageflow costs``: model spend across runs from the cost ledger, by template, agent or
model (``--json``: the ``CostReport`` the dashboard's costs page shows)."""

from __future__ import annotations

import argparse
import datetime as dt

from stageflow.cli.app import App, emit
from stageflow.cli.exits import EXIT_OK
from stageflow.cli.render import money, tokens
from stageflow.engine.costs import cost_report, parse_since


async def cmd_costs(app: App, args: argparse.Namespace) -> int:
    report = await cost_report(app.store, since=parse_since(args.since), by=args.by)
    if args.json:
        emit(app, report)
        return EXIT_OK
    since = dt.datetime.fromtimestamp(report.since, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = app.out
    out.write(
        f"costs since {since} ({args.since}): {money(report.total_usd)} over {report.runs} "
        f"run(s), {report.requests} model request(s)\n"
    )
    if not report.groups:
        out.write("no model requests in that time\n")
        return EXIT_OK
    rows = [[args.by, "runs", "requests", "input", "output", "cache read", "cost"]]
    rows += [
        [
            g.key,
            str(g.runs),
            str(g.requests),
            tokens(g.input_tokens),
            tokens(g.output_tokens),
            tokens(g.cache_read_tokens),
            money(g.cost_usd),
        ]
        for g in report.groups
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    return EXIT_OK
