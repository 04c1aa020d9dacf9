"""``stageflow estimate`` and ``stageflow profiles``, and the run command's cost confirmation.

``estimate TEMPLATE --task ...`` prints the forecast a run would start with (p50 and p90 per
stage and for the run, expected stages and reworks, where the figures come from); ``profiles``
the learning profiles (``--rebuild`` replaces them with what the runs' logs say). ``confirm_run``
is what ``stageflow run`` does when a new run's forecast needs a human: ``--yes`` confirms, an
interactive terminal asks, and otherwise the run waits for ``stageflow approve``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import anyio.to_thread

from stageflow.cli.app import App, emit
from stageflow.cli.exits import EXIT_OK
from stageflow.cli.inputs import parse_inputs
from stageflow.cli.render import money
from stageflow.engine.forecasts import CONFIRM_GATE, RunForecast
from stageflow.engine.state import RunState
from stageflow.errors import InvalidState

__all__ = ["cmd_estimate", "cmd_profiles", "confirm_run"]


def render_forecast(fc: RunForecast, out: TextIO) -> None:
    """The forecast as a table, then the totals."""
    rows = [["stage", "agent", "model", "type", "runs", "att", "p50", "p90", "from"]]
    for s in fc.stages:
        rows.append(
            [
                s.stage,
                s.agent or "cmd",
                s.model or "-",
                s.task_type or "-",
                f"{s.runs:.0%}",
                f"{s.attempts:.1f}",
                money(s.p50_usd),
                money(s.p90_usd),
                f"{s.basis} ({s.samples})" if s.samples else s.basis,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write(
        f"run: {money(fc.p50_usd)} (p50), {money(fc.p90_usd)} (p90), mean {money(fc.mean_usd)}; "
        f"{fc.expected_stages:.1f} stages and {fc.expected_reworks:.2f} reworks expected\n"
    )
    out.write(f"from: {fc.note}; prices as of {fc.prices_as_of}\n")


async def cmd_estimate(app: App, args: argparse.Namespace) -> int:
    fc = await app.service.estimate(args.template, args.task, inputs=parse_inputs(args.input))
    if args.json:
        emit(app, fc)
    else:
        app.out.write(f"forecast of {fc.template} for: {args.task.strip()}\n")
        render_forecast(fc, app.out)
    return EXIT_OK


async def cmd_profiles(app: App, args: argparse.Namespace) -> int:
    learning = app.learning
    assert learning is not None  # LEARNING_COMMANDS fail at start-up without it
    if args.rebuild:
        report = await learning.updater.rebuild()
        if not args.json:
            skipped = f", {len(report.skipped)} unreadable" if report.skipped else ""
            app.out.write(
                f"rebuilt from {report.runs} run(s){skipped}: {report.samples} attempt(s), "
                f"{report.profiles} profile(s)\n"
            )
    result = await learning.profiles(agent=args.agent, task_type=args.task_type)
    if args.json:
        emit(app, result)
        return EXIT_OK
    if not result.profiles:
        app.out.write("no profiles yet: they grow as agent stages finish on a model runner\n")
        return EXIT_OK
    rows = [["agent", "type", "model", "runs", "ok", "rework", "fail", "success", "conf", "cost"]]
    for p in result.profiles:
        rows.append(
            [
                p.agent,
                p.task_type,
                p.model,
                str(p.executions),
                str(p.successes),
                str(p.reworks),
                str(p.failures),
                f"{p.success_rate:.2f}",
                f"{p.confidence:.2f}",
                money(p.cost_mean_usd),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        app.out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    app.out.write(
        f"auto: threshold {result.success_threshold:.2f} over {', '.join(result.models)}; "
        f"exploration at most {result.explore_share:.0%} of attempts\n"
    )
    for p in result.profiles:
        if p.dropped or not p.clears_threshold:
            app.out.write(f"  {p.why}\n")
    return EXIT_OK


def _ask(question: str, out: TextIO) -> bool | None:
    """A yes/no answer from an interactive terminal; None when stdin is not one."""
    stdin: Any = sys.stdin
    if stdin is None or not stdin.isatty():
        return None
    out.write(question)
    out.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


async def confirm_run(app: App, state: RunState, *, yes: bool) -> RunState:
    """A new run waiting for its cost confirmation: ``--yes`` or the terminal's answer decides
    (no: the run is cancelled); without either it stays waiting, and says how to go on."""
    if state.confirmation != "pending":
        return state
    fc = RunForecast.model_validate(state.forecast) if state.forecast else None
    what = (
        f"forecast {money(fc.p50_usd)} (p50) to {money(fc.p90_usd)} (p90)"
        if fc is not None
        else "no forecast could be made"
    )
    limit = money(state.confirm_above_usd or 0.0)
    if fc is not None and not app.quiet:
        render_forecast(fc, app.out)
    answer = (
        True
        if yes
        else await anyio.to_thread.run_sync(
            _ask, f"{what}, above confirm_above_usd {limit}. Start the run? [y/N] ", app.out
        )
    )
    if answer is None:
        if not app.quiet:
            app.out.write(
                f"run {state.run_id} waits: {what}, above confirm_above_usd {limit}. Confirm "
                f"with `stageflow approve {state.run_id}` (or start runs with --yes), or "
                f'decline with `stageflow reject {state.run_id} --feedback "..."`\n'
            )
        return state
    try:
        return await app.service.decide(
            state.run_id,
            stage=CONFIRM_GATE,
            decision="approve" if answer else "reject",
            feedback=None if answer else "declined at the prompt",
            approver="cli --yes" if yes else "cli",
            via="cli",
        )
    except InvalidState:  # decided meanwhile (another terminal): go on with what it says
        return await app.service.state(state.run_id)
