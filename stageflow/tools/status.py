"""``workflow_status``: one run's dashboard (optionally after waiting for it to change), or the
recent runs."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp.types import CallToolResult, ResourceLink
from pydantic import Field

from stageflow.engine.views import RunListItem, RunView
from stageflow.tools.deps import ToolContext, ToolDeps, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.models import StatusResult
from stageflow.tools.results import artifact_link, tool_result

MAX_WAIT_S = 50.0
POLL_S = 1.0  # how often other processes' changes are looked for (our own wake us at once)
RECENT_RUNS = 20

DESCRIPTION = f"""\
Show one workflow run as a dashboard, or the {RECENT_RUNS} most recent runs when run_id is
omitted.

The dashboard lists every stage with its status (pending, running, awaiting_approval, blocked,
retry_wait, succeeded, failed, skipped, cancelled), attempts, reworks, duration, model, tokens
and cost; the run's status (running, waiting, paused, completed, failed, cancelled), total
spend and budget; `waiting`: the gates that need a human and which artifacts to review;
`blockers`; and `next_action`. Artifacts appear as names, sizes and short previews with
resource links; read the full text with workflow_artifact.

wait_seconds (capped at {int(MAX_WAIT_S)}) blocks until the run changes (a stage starts or
finishes, a gate opens, the run ends), sending progress notifications meanwhile, and returns at
once if the run already waits for a human, is paused, or has ended. Poll with wait_seconds=30
instead of calling repeatedly."""


def _settled(view: RunView) -> bool:
    """Nothing will change without a human (or ever)."""
    if view.status in ("completed", "failed", "cancelled", "waiting"):
        return True
    return view.status == "paused" and not any(s.status == "running" for s in view.stages)


async def _wait_for_change(
    ctx: ToolContext, app: ToolDeps, run_id: str, seq: int, wait_s: float
) -> bool:
    """True as soon as the run's log grows past ``seq``; False after ``wait_s``."""
    woke = anyio.Event()

    def appended(rid: str, _holder: str | None) -> None:
        if rid == run_id:
            woke.set()

    unsubscribe = app.store.on_append(appended)
    start = anyio.current_time()
    try:
        with anyio.move_on_after(wait_s):
            while True:
                row = await app.store.get_run(run_id)  # catches other processes' writes
                if row.last_seq != seq:
                    return True
                with anyio.move_on_after(POLL_S):
                    await woke.wait()
                if woke.is_set():
                    return True
                elapsed = anyio.current_time() - start
                await ctx.report_progress(
                    min(elapsed, wait_s), wait_s, f"waiting for run {run_id} to change"
                )
    finally:
        unsubscribe()
    return False


def _next_step(view: RunView) -> str:
    rid = view.run_id
    if view.waiting:
        w = view.waiting[0]
        review = f" after reading {', '.join(w.review)}" if w.review else ""
        return (
            f"ask the human about '{w.stage}' ({w.what}){review}; then "
            f"workflow_approve(run_id='{rid}', stage='{w.stage}', decision='approve') or "
            "decision='reject' with feedback"
        )
    if view.status == "completed":
        return "done: read the artifacts with workflow_artifact"
    if view.status == "paused":
        return f"paused: workflow_control(run_id='{rid}', action='resume') to continue"
    if view.status == "failed":
        return f"failed: fix the cause, then workflow_control(run_id='{rid}', action='retry')"
    if view.status == "cancelled":
        return "cancelled"
    return f"wait: workflow_status(run_id='{rid}', wait_seconds=30)"


def _run_summary(view: RunView) -> str:
    lines = [
        f"run {view.run_id} ({view.template}) is {view.status}; spent ${view.spent_usd:.4f}"
        + (f" of ${view.budget_usd:.2f}" if view.budget_usd is not None else "")
        + f"; runner {view.runner}",
    ]
    for s in view.stages:
        extra = f", {s.reworks} rework(s)" if s.reworks else ""
        arts = ", ".join(f"{a.name} ({a.size} B)" for a in s.artifacts)
        lines.append(
            f"- {s.id}: {s.status} (attempts {s.attempts}{extra}"
            + (f", {s.model}" if s.model else "")
            + ")"
            + (f" -> {arts}" if arts else "")
        )
    lines.extend(f"blocked: {b}" for b in view.blockers)
    if view.reason:
        lines.append(f"reason: {view.reason}")
    lines.append(f"next: {_next_step(view)}")
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
) -> Annotated[CallToolResult, StatusResult]:
    """One run's dashboard, or the recent runs."""
    app = deps(ctx)
    with tool_errors():
        if run_id is None:
            runs = [
                r.model_copy(update={"task": _short(r.task, 200)})
                for r in await app.service.list_runs(limit=RECENT_RUNS)
            ]
            return tool_result(StatusResult(runs=runs), _runs_summary(runs))
        view = await app.service.view(run_id)
        changed, waited = False, 0.0
        if wait_seconds and not _settled(view):
            start = anyio.current_time()
            changed = await _wait_for_change(
                ctx, app, run_id, view.seq, min(wait_seconds, MAX_WAIT_S)
            )
            waited = round(anyio.current_time() - start, 3)
            view = await app.service.view(run_id)
    links: list[ResourceLink] = [
        artifact_link(view.run_id, a.stage, a.name, a.size)
        for s in view.stages
        for a in s.artifacts
    ]
    view = _compact(view)
    result = StatusResult(run=view, changed=changed, waited_s=waited)
    return tool_result(result, _run_summary(view), links)


TEXT_PREVIEW = 500  # characters of a task, summary or gate text a status result carries


def _short(text: str, limit: int = TEXT_PREVIEW) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(view: RunView) -> RunView:
    """The dashboard with long free text cut to previews: status results stay small whatever
    the task or a model's summary look like (artifacts are read with workflow_artifact)."""
    return view.model_copy(
        update={
            "task": _short(view.task),
            "stages": [
                s.model_copy(
                    update={
                        "summary": _short(s.summary),
                        "reason": _short(s.reason) if s.reason else s.reason,
                    }
                )
                for s in view.stages
            ],
            "waiting": [w.model_copy(update={"what": _short(w.what)}) for w in view.waiting],
            "reason": _short(view.reason) if view.reason else view.reason,
        }
    )
