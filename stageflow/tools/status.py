"""``workflow_status``: one run's dashboard (optionally after waiting for it to change), or the
recent runs."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import anyio
from mcp.types import CallToolResult, ResourceLink
from pydantic import Field

from stageflow.engine.state import DONE_STAGE
from stageflow.engine.views import RunListItem, RunView
from stageflow.tools.briefs import RunBrief, run_brief, short
from stageflow.tools.deps import ToolContext, ToolDeps, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.models import StatusResult
from stageflow.tools.results import artifact_link, tool_result

MAX_WAIT_S = 50.0
POLL_S = 1.0  # how often other processes' changes are looked for (our own wake us at once)
RECENT_RUNS = 20

DESCRIPTION = f"""\
Show one workflow run, or the {RECENT_RUNS} most recent runs when run_id is omitted.

A run shows each stage's status (pending, running, awaiting_approval, blocked, retry_wait,
succeeded, failed, skipped, cancelled, expanded: its items run), agent, model, cost, artifact
names and `items` (planned sub-stages); the run's status
(running, waiting, paused, completed, failed, cancelled), spend and budget; `waiting`: the gates
that need a human, with the artifacts to show them; `blockers`; and `next_action`: what to do
next. Read artifacts with workflow_artifact. detail="full" adds every attempt with its tokens,
errors and context manifest (large: use it to investigate, not to poll).

wait_seconds (capped at {int(MAX_WAIT_S)}) blocks until the run changes (a stage starts or
finishes, a gate opens, the run ends), sending progress notifications that name what is
running, and returns at once if the run already waits for a human, is paused, or has ended.
Poll with wait_seconds=30 instead of calling repeatedly."""


def _settled(view: RunView) -> bool:
    """Nothing will change without a human (or ever)."""
    if view.status in ("completed", "failed", "cancelled", "waiting"):
        return True
    return view.status == "paused" and not any(s.status == "running" for s in view.stages)


def progress_message(view: RunView, now: float) -> str:
    """What a progress notification says while waiting, e.g.
    ``implementation running 42 s; 2 of 5 stages done``."""
    running = []
    for s in view.stages:
        if s.status == "running" and s.history and s.history[-1].started_at is not None:
            running.append(f"{s.id} running {max(0, round(now - s.history[-1].started_at))} s")
        elif s.status in ("running", "retry_wait"):
            running.append(f"{s.id} {s.status.replace('_', ' ')}")
    done = sum(1 for s in view.stages if s.status in DONE_STAGE)
    doing = ", ".join(running) if running else f"run {view.run_id} {view.status}"
    return f"{doing}; {done} of {len(view.stages)} stages done"


async def _wait_for_change(ctx: ToolContext, app: ToolDeps, view: RunView, wait_s: float) -> bool:
    """True as soon as the run's log grows past ``view.seq``; False after ``wait_s``."""
    woke = anyio.Event()
    run_id = view.run_id

    def appended(rid: str, _holder: str | None) -> None:
        if rid == run_id:
            woke.set()

    unsubscribe = app.store.on_append(appended)
    start = anyio.current_time()
    try:
        with anyio.move_on_after(wait_s):
            while True:
                row = await app.store.get_run(run_id)  # catches other processes' writes
                if row.last_seq != view.seq:
                    return True
                with anyio.move_on_after(POLL_S):
                    await woke.wait()
                if woke.is_set():
                    return True
                elapsed = anyio.current_time() - start
                await ctx.report_progress(
                    min(elapsed, wait_s), wait_s, progress_message(view, time.time())
                )
    finally:
        unsubscribe()
    return False


def _run_summary(brief: RunBrief) -> str:
    lines = [
        f"run {brief.run_id} ({brief.template}) is {brief.status}; spent ${brief.spent_usd:.4f}"
        + (f" of ${brief.budget_usd:.2f}" if brief.budget_usd is not None else "")
        + f"; runner {brief.runner}",
    ]
    for s in brief.stages:
        extra = f", {s.reworks} rework(s)" if s.reworks else ""
        arts = ", ".join(s.artifacts)
        if s.items is not None:
            counts = f"{sum(i.status == 'succeeded' for i in s.items)} of {len(s.items)} items done"
            lines.append(f"- {s.id}: {s.status} ({counts})")
            lines.extend(
                f"  - {s.id}.{i.id}: {i.status}"
                + (f" (after {', '.join(i.after)})" if i.after else "")
                for i in s.items
            )
            continue
        lines.append(
            f"- {s.id}: {s.status} (attempts {s.attempts}{extra}"
            + (f", {s.model}" if s.model else "")
            + ")"
            + (f" -> {arts}" if arts else "")
        )
    lines.extend(f"blocked: {b}" for b in brief.blockers)
    lines.extend(f"adjusted: {a}" for a in brief.adjustments)
    if brief.reason:
        lines.append(f"reason: {brief.reason}")
    lines.append(f"next: {brief.next_action}")
    return "\n".join(lines)


def _runs_summary(runs: list[RunListItem]) -> str:
    if not runs:
        return "no runs yet: start one with workflow_start"
    lines = [f"{len(runs)} recent runs:"]
    lines.extend(f"- {r.run_id} {r.template} {r.status}: {r.task[:60]}" for r in runs)
    return "\n".join(lines)


async def workflow_status(
    ctx: ToolContext,
    run_id: Annotated[
        str | None, Field(description="the run to show; omit to list recent runs")
    ] = None,
    wait_seconds: Annotated[
        float | None,
        Field(description=f"wait up to this long (max {int(MAX_WAIT_S)}) for a change", ge=0),
    ] = None,
    detail: Annotated[
        Literal["brief", "full"],
        Field(description="full adds every attempt's history and context manifest"),
    ] = "brief",
) -> Annotated[CallToolResult, StatusResult]:
    """One run, or the recent runs."""
    app = deps(ctx)
    with tool_errors():
        if run_id is None:
            runs = [
                r.model_copy(update={"task": short(r.task)})
                for r in await app.service.list_runs(limit=RECENT_RUNS)
            ]
            return tool_result(StatusResult(runs=runs), _runs_summary(runs))
        view = await app.service.view(run_id)
        changed, waited = False, 0.0
        if wait_seconds and not _settled(view):
            start = anyio.current_time()
            changed = await _wait_for_change(ctx, app, view, min(wait_seconds, MAX_WAIT_S))
            waited = round(anyio.current_time() - start, 3)
            view = await app.service.view(run_id)
    links: list[ResourceLink] = [
        artifact_link(view.run_id, a.stage, a.name, a.size)
        for s in view.stages
        for a in s.artifacts
    ]
    brief = run_brief(view)
    result = StatusResult(
        run=brief,
        full=_compact(view) if detail == "full" else None,
        changed=changed,
        waited_s=waited,
    )
    return tool_result(result, _run_summary(brief), links)


TEXT_PREVIEW = 500  # characters of a task, summary or gate text a full result carries


def _compact(view: RunView) -> RunView:
    """The full view with long free text cut to previews: results stay bounded whatever the
    task or a model's summary look like (artifacts are read with workflow_artifact)."""
    return view.model_copy(
        update={
            "task": short(view.task, TEXT_PREVIEW),
            "stages": [
                s.model_copy(
                    update={
                        "summary": short(s.summary, TEXT_PREVIEW),
                        "reason": short(s.reason, TEXT_PREVIEW) if s.reason else s.reason,
                    }
                )
                for s in view.stages
            ],
            "waiting": [
                w.model_copy(update={"what": short(w.what, TEXT_PREVIEW)}) for w in view.waiting
            ],
            "reason": short(view.reason, TEXT_PREVIEW) if view.reason else view.reason,
        }
    )
