"""``stageflow status RUN --watch``: the run as it changes, until it needs a human or ends.

On a terminal, with ``rich`` installed (the ``terminal`` extra) and ``NO_COLOR`` unset, one
table redraws in place with coloured states, each stage's elapsed time (a running one counts
up), tokens and cost, and the run's spend against its budget. Otherwise (a pipe, a file,
``NO_COLOR``, no ``rich``) each change prints one plain line, so logs stay readable. The view
is read from the store, so it follows a run that another process executes.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from stageflow.cli.render import duration, money, tokens

if TYPE_CHECKING:
    from stageflow.cli.app import App
    from stageflow.engine.views import RunView

__all__ = ["live_terminal", "settled", "watch"]

POLL_S = 0.5
COLOURS = {
    "succeeded": "green",
    "running": "cyan",
    "awaiting_approval": "yellow",
    "blocked": "yellow",
    "failed": "red",
    "attempt_failed": "red",
    "cancelled": "red",
    "skipped": "dim",
    "pending": "white",
    "retry_wait": "magenta",
}


def live_terminal(out: TextIO) -> bool:
    """Whether ``out`` gets the redrawing table: a terminal, colour allowed, rich present."""
    if os.environ.get("NO_COLOR") or not getattr(out, "isatty", lambda: False)():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def settled(view: RunView) -> bool:
    """Nothing more happens without a human (or the run is over)."""
    running = any(s.status in ("running", "retry_wait") for s in view.stages)
    return not running and view.status in ("completed", "failed", "cancelled", "paused", "waiting")


def _elapsed(view: RunView, stage: Any, now: float) -> str:
    current = stage.history[-1] if stage.history else None
    if stage.status == "running" and current is not None:
        return duration(stage.duration_s + max(0.0, now - current.started_at))
    return duration(stage.duration_s if stage.attempts else None)


def table(view: RunView, now: float) -> Any:
    """The rich renderable of ``view``."""
    from rich.table import Table
    from rich.text import Text

    budget = f" of {money(view.budget_usd)}" if view.budget_usd is not None else ""
    title = f"run {view.run_id}  {view.template}  [{view.status}]"
    caption = (
        f"elapsed {duration(max(0.0, now - view.created_at))}  spent {money(view.spent_usd)}"
        f"{budget}  tokens {tokens(view.usage.total_tokens)}  next: {view.next_action}"
    )
    grid = Table(title=title, caption=caption, caption_justify="left", expand=False)
    for name in ("stage", "status", "att", "time", "model", "tokens", "cost"):
        grid.add_column(name, justify="right" if name in ("att", "tokens", "cost") else "left")
    for s in view.stages:
        status = s.status + (f" (rework {s.reworks})" if s.reworks else "")
        grid.add_row(
            s.id,
            Text(status, style=COLOURS.get(s.status, "")),
            str(s.attempts),
            _elapsed(view, s, now),
            s.model or ("cmd" if s.kind == "command" else "-"),
            tokens(s.usage.total_tokens),
            money(s.usage.cost_usd),
        )
    return grid


def plain_line(view: RunView) -> str:
    """One line per change when there is no terminal to redraw."""
    states = " ".join(f"{s.id}={s.status}" for s in view.stages)
    budget = f"/{money(view.budget_usd)}" if view.budget_usd is not None else ""
    clock = time.strftime("%H:%M:%S")
    return f"{clock} [{view.status}] {states} spent {money(view.spent_usd)}{budget}"


async def watch(app: App, run_id: str, out: TextIO, *, interval: float = POLL_S) -> RunView:
    """Follow ``run_id`` until it settles (``settled``); returns the last view."""
    view = await app.service.view(run_id)
    if not live_terminal(out):
        last = ""
        while True:
            line = plain_line(view)
            if line.split(" ", 1)[1] != last:
                out.write(line + "\n")
                out.flush()
                last = line.split(" ", 1)[1]
            if settled(view):
                return view
            await anyio.sleep(interval)
            view = await app.service.view(run_id)
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    with Live(table(view, time.time()), console=console, auto_refresh=False) as live:
        while not settled(view):
            await anyio.sleep(interval)
            view = await app.service.view(run_id)
            live.update(table(view, time.time()), refresh=True)
    return view
