"""HTML building blocks for the dashboard's pages. Every value goes through ``esc``; the only
markup that is not written here is the Markdown renderer's (escaped first as well)."""

from __future__ import annotations

import datetime as dt
import html

__all__ = ["esc", "layout", "money", "status_badge", "when"]

NEEDS_HUMAN = ("waiting",)


def esc(value: object) -> str:
    """``value`` as HTML text (quotes escaped too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def money(usd: float | None) -> str:
    return "-" if usd is None else f"${usd:,.4f}"


def when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_badge(status: str) -> str:
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


def layout(title: str, body: str, *, csrf: str, live: str | None = None) -> str:
    """A whole page. ``live`` is the SSE URL the page listens to (``dashboard.js``)."""
    live_attr = f' data-live="{esc(live)}"' if live else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{esc(csrf)}">'
        f"<title>{esc(title)} - stageflow</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script>'
        f"</head><body{live_attr}>"
        '<header><a class="brand" href="/">stageflow</a>'
        '<nav><a href="/">runs</a> <a href="/costs">costs</a></nav>'
        '<span id="live-state" class="live-state">static</span></header>'
        f"<main>{body}</main></body></html>"
    )
