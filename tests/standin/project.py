"""A small sample project for stage agents to work on: sources to read, a task, git.

The stand-in's scripted agent globs ``**/*.py`` and reads the files the brief names first
(``TASK`` names ``src/usage/report.py`` and ``src/usage/cli.py``), so runs against this project
exercise the workspace tools with realistic file sizes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TASK = (
    "Add CSV export to the monthly usage report: a `--format csv|table` option on "
    "`usage report`, RFC 4180 quoting, and tests. The report is built in "
    "`src/usage/report.py` and the command in `src/usage/cli.py`."
)

_REPORT = '''"""Monthly usage report: collect per-customer usage and render it as a table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from usage.store import UsageStore


@dataclass(frozen=True)
class Row:
    customer: str
    plan: str
    requests: int
    tokens: int
    cost: Decimal


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First day of ``month`` (YYYY-MM) and first day of the next month."""
    year, mon = (int(p) for p in month.split("-"))
    start = dt.date(year, mon, 1)
    end = dt.date(year + mon // 12, mon % 12 + 1, 1)
    return start, end


def build_report(store: UsageStore, month: str) -> list[Row]:
    """One row per customer with usage in ``month``, biggest spender first."""
    start, end = month_bounds(month)
    rows = []
    for customer in store.customers():
        events = store.events(customer.id, start, end)
        if not events:
            continue
        rows.append(
            Row(
                customer=customer.name,
                plan=customer.plan,
                requests=len(events),
                tokens=sum(e.tokens for e in events),
                cost=sum((e.cost for e in events), Decimal("0")),
            )
        )
    rows.sort(key=lambda r: (-r.cost, r.customer))
    return rows


def render_table(rows: list[Row]) -> str:
    """A fixed-width text table with a total line."""
    header = f"{'customer':<24} {'plan':<10} {'requests':>9} {'tokens':>12} {'cost':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.customer[:24]:<24} {r.plan:<10} {r.requests:>9} {r.tokens:>12} {r.cost:>10.2f}"
        )
    total = sum((r.cost for r in rows), Decimal("0"))
    lines.append("-" * len(header))
    lines.append(f"{'total':<24} {'':<10} {'':>9} {'':>12} {total:>10.2f}")
    return "\\n".join(lines)
'''

_CLI = '''"""The `usage` command line."""

from __future__ import annotations

import argparse
import sys

from usage.report import build_report, render_table
from usage.store import open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="usage")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="print the monthly usage report")
    rep.add_argument("month", help="YYYY-MM")
    rep.add_argument("--db", default="usage.db")
    args = parser.parse_args(argv)
    if args.command == "report":
        store = open_store(args.db)
        try:
            rows = build_report(store, args.month)
        except ValueError as exc:
            parser.error(f"bad month {args.month!r}: {exc}")
        sys.stdout.write(render_table(rows) + "\\n")
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
'''

_STORE = '''"""SQLite-backed usage events."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Customer:
    id: int
    name: str
    plan: str


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    tokens: int
    cost: Decimal


class UsageStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def customers(self) -> list[Customer]:
        cur = self.conn.execute("SELECT id, name, plan FROM customers ORDER BY name")
        return [Customer(*row) for row in cur]

    def events(self, customer_id: int, start: dt.date, end: dt.date) -> list[Event]:
        cur = self.conn.execute(
            "SELECT at, tokens, cost FROM events WHERE customer_id = ? AND at >= ? AND at < ?",
            (customer_id, start.isoformat(), end.isoformat()),
        )
        return [Event(dt.datetime.fromisoformat(a), t, Decimal(c)) for a, t, c in cur]


def open_store(path: str) -> UsageStore:
    return UsageStore(sqlite3.connect(path))
'''

_TEST = """from decimal import Decimal

from usage.report import Row, month_bounds, render_table


def test_month_bounds_wraps_the_year():
    assert month_bounds("2024-12")[1].isoformat() == "2025-01-01"


def test_table_has_a_total_line():
    rows = [Row("acme", "pro", 3, 1200, Decimal("1.50"))]
    assert render_table(rows).splitlines()[-1].strip().endswith("1.50")
"""

PROJECT_FILES = {
    "README.md": "# usage\n\nMonthly usage reports for the billing team.\n\n"
    "```\nusage report 2024-05 --db usage.db\n```\n",
    "pyproject.toml": '[project]\nname = "usage"\nversion = "0.3.0"\n'
    'requires-python = ">=3.11"\n\n[project.scripts]\nusage = "usage.cli:main"\n',
    "src/usage/__init__.py": '"""Usage reporting."""\n',
    "src/usage/report.py": _REPORT,
    "src/usage/cli.py": _CLI,
    "src/usage/store.py": _STORE,
    "tests/test_report.py": _TEST,
}


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=60,
    )


def make_project(root: Path, *, git: bool = True) -> Path:
    """Write the project under ``root``; with ``git``, as a repository with one commit."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in PROJECT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if git:
        _git(root, "init", "-q")
        _git(root, "add", ".")
        _git(root, "commit", "-qm", "usage report")
    return root
