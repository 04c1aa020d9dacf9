"""Human output for the CLI: compact tables and one-line progress events.

Every read command also has ``--json``, which prints the same pydantic model the MCP tools
return; this module is only the human face of those models.
"""

from __future__ import annotations

import time
from typing import TextIO

from stageflow import events as ev
from stageflow.engine.state import RunState
from stageflow.engine.views import RunListItem, RunView

STATUS_MARK = {
    "pending": ".",
    "running": ">",
    "attempt_failed": "!",
    "retry_wait": "~",
    "blocked": "?",
    "awaiting_approval": "?",
    "changes_requested": "!",
    "expanded": "*",
    "escalated": "^",
    "succeeded": "+",
    "failed": "x",
    "skipped": "-",
    "cancelled": "x",
}


def tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def money(usd: float) -> str:
    return f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def render_run(
    view: RunView, out: TextIO, *, runner_label: str | None = None, said: set[str] | None = None
) -> None:
    """The run dashboard. ``said`` holds messages this command printed already (progress
    lines): they are not repeated."""
    said = set() if said is None else said
    label = runner_label or view.runner
    out.write(f"run {view.run_id}  {view.template}  [{view.status}]  runner: {label}\n")
    out.write(f"task: {view.task}\n")
    rows = [["", "stage", "status", "att", "time", "model", "tokens", "cost"]]
    by_id = {s.id: s for s in view.stages}
    for s in view.stages:
        status = s.status + (f" (rework {s.reworks})" if s.reworks else "")
        usage, model, name = s.usage, s.model or ("cmd" if s.kind == "command" else "-"), s.id
        if s.items:  # a for_each stage: its items' totals; the items follow, indented
            items = [by_id[i] for i in s.items if i in by_id]
            done = sum(1 for i in items if i.status == "succeeded")
            status += f" ({done} of {len(items)} items)"
            for i in items:
                usage = usage + i.usage
            model = "-"
        elif s.parent is not None:
            name = f"  - {s.id.removeprefix(s.parent + '.')}"
        rows.append(
            [
                STATUS_MARK.get(s.status, " "),
                name,
                status,
                str(s.attempts),
                duration(s.duration_s if s.attempts else None),
                model,
                tokens(usage.total_tokens),
                money(usage.cost_usd),
            ]
        )
    _table(rows, out)
    for s in view.stages:
        shown = (
            s.status in ("failed", "attempt_failed", "skipped", "blocked", "escalated") and s.reason
        )
        if shown and not _said(s.reason, said):
            out.write(f"  {s.id}: {s.reason}\n")
            said.add(s.reason or "")
        if s.model_mismatch:
            out.write(f"  {s.id}: answered by another model than asked for ({s.model})\n")
        if s.why:  # the stage left agent or model open: who and which model, and why
            out.write(f"  {s.id}: {s.why}\n")
    for s in view.stages:
        if s.git is not None and (s.git.commit or s.status == "succeeded"):
            files = f", {s.git.files_changed} file(s)" if s.git.files_changed else ""
            sha = f" {s.git.commit[:10]}" if s.git.commit else ""
            out.write(f"  {s.id}: {s.git.branch}{sha}{files}: {s.git.merge}\n")
    arts = [a for s in view.stages for a in s.artifacts]
    if arts:
        out.write(
            "artifacts: "
            + ", ".join(f"{a.stage}/{a.name}@v{a.version} ({a.size} B)" for a in arts)
            + "\n"
        )
    for w in view.waiting:
        review = f" [review: {', '.join(w.review)}]" if w.review else ""
        kind = f"{w.kind}, attempt {w.attempt}" if w.attempt else w.kind
        if w.min_approvals > 1:
            who = f": {', '.join(w.approved_by)}" if w.approved_by else ""
            kind += f", {len(w.approved_by)} of {w.min_approvals} approvals{who}"
        out.write(f"waiting: {w.stage} ({kind}) - {w.what.rstrip()}{review}\n")
    for a in view.adjustments:
        out.write(f"adjusted: {a}\n")
    budget = f" of {money(view.budget_usd)}" if view.budget_usd is not None else ""
    orch = f"  orchestration: {money(view.orchestration_usd)}" if view.orchestration_usd else ""
    out.write(
        f"spent: {money(view.spent_usd)}{budget}{orch}  tokens: {tokens(view.usage.total_tokens)}\n"
    )
    fc = view.forecast
    if fc is not None:
        out.write(
            f"forecast: {money(fc.p50_usd)} (p50) to {money(fc.p90_usd)} (p90); "
            f"spent {money(fc.spent_usd)}: {fc.verdict}\n"
        )
    g = view.git
    if g is not None:
        start = f" from {g.target}" if g.target else ""
        out.write(f"run branch: {g.branch}{start}, last commit {(g.head or '-')[:10]}\n")
        for land in g.landed:
            out.write(
                f"  landed into {land.into} as {(land.commit or '-')[:10]} ({land.strategy})\n"
            )
        if g.land_refused and not g.landed:
            out.write(f"  land refused: {g.land_refused}\n")
    ws = view.workspace
    if ws is not None:
        where = f"{ws.path}" + (f" (branch {ws.branch})" if ws.branch else "")
        out.write(f"workspace: {where}\n")
        if ws.diff is not None:
            out.write("".join(f"  {line}\n" for line in ws.diff.splitlines()))
    failed = view.status in ("failed", "cancelled", "paused")
    if view.reason and failed and not _said(view.reason, said):
        out.write(f"reason: {view.reason}\n")
    out.write(f"next: {view.next_action}\n")


def render_runs(items: list[RunListItem], out: TextIO) -> None:
    if not items:
        out.write('no runs yet; start one with `stageflow run TEMPLATE --task "..."`\n')
        return
    rows = [["run", "template", "status", "spent", "started", "task"]]
    for r in items:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        task = r.task if len(r.task) <= 50 else r.task[:47] + "..."
        rows.append([r.run_id, r.template, r.status, money(r.spent_usd), started, task])
    _table(rows, out)


def _said(text: str | None, said: set[str]) -> bool:
    """True when ``text`` is, or carries, a message already printed."""
    return bool(text) and any(m and m in (text or "") for m in said)


def describe_event(env: ev.Envelope, state: RunState, said: set[str] | None = None) -> str | None:
    """One progress line for an event, or None for bookkeeping events. Failure messages go
    into ``said`` and are not repeated by later lines (a stage failing, then the run)."""
    said = set() if said is None else said
    line = _describe(env, state, said)
    e = env.event
    if isinstance(e, ev.AttemptFinished) and e.error and e.outcome != "passed":
        said.add(e.error)
    elif isinstance(e, ev.StageFailed | ev.RunFailed):
        said.add(e.reason)
    return line


def _describe(env: ev.Envelope, state: RunState, said: set[str]) -> str | None:
    e = env.event
    clock = time.strftime("%H:%M:%S", time.localtime(env.at))
    match e:
        case ev.AttemptStarted():
            kind = state.stage_spec(e.stage).kind if e.stage in state.stages else "command"
            who = e.agent or kind
            model = f", {e.model}" if e.model else ""
            return f"{clock}  {e.stage:<18} started attempt {e.attempt} ({e.kind}; {who}{model})"
        case ev.AttemptFinished():
            arts = ", ".join(f"{a.name}@v{a.version}" for a in e.artifacts)
            extra = f" -> {arts}" if arts else ""
            err = f": {e.error}" if e.error and e.outcome != "passed" else ""
            if e.error and _said(e.error, said):
                err = " (as above)"
            return f"{clock}  {e.stage:<18} {e.outcome} in {duration(e.duration_s)}{extra}{err}"
        case ev.StageSkipped():
            return f"{clock}  {e.stage:<18} skipped ({e.reason})"
        case ev.DebateTurn():
            return (
                f"{clock}  {e.stage:<18} round {e.round}: {e.participant} ({e.model}): "
                f"{e.position or 'unstated'}"
            )
        case ev.DebateVerdict():
            return (
                f"{clock}  {e.stage:<18} round {e.round} verdict ({e.decided_by}): "
                f"agreement {e.agreement:.2f}, {e.action}"
            )
        case ev.GateBlocked():
            return f"{clock}  {e.stage:<18} blocked: gate false ({e.condition}); a human decides"
        case ev.GateDecided():
            return f"{clock}  {e.stage:<18} gate {e.decision}d by {e.approver}"
        case ev.ApprovalDecided():
            fb = f": {e.feedback}" if e.feedback and e.decision == "reject" else ""
            of = f" (attempt {e.attempt})" if e.attempt else ""
            return f"{clock}  {e.stage:<18} {e.decision}d{of} by {e.approver}{fb}"
        case ev.RetryScheduled():
            wait = max(0.0, e.not_before - env.at)
            return f"{clock}  {e.stage:<18} retry {e.attempt} in {duration(wait)} ({e.reason})"
        case ev.StageFailed():
            tol = " (tolerated: on_failure continue)" if e.tolerated else ""
            why = "" if _said(e.reason, said) else f": {e.reason}"
            return f"{clock}  {e.stage:<18} FAILED{tol}{why}"
        case ev.RollbackStarted():
            return f"{clock}  {e.rollback_stage:<18} rollback for '{e.failed_stage}'"
        case ev.RunPaused():
            return f"{clock}  run paused by {e.by}: {e.reason}"
        case ev.RunResumed():
            return f"{clock}  run resumed by {e.by}"
        case ev.RunCancelled():
            return f"{clock}  run cancelled by {e.by}: {e.reason}"
        case ev.RunCompleted():
            return f"{clock}  run completed"
        case ev.RunFailed():
            why = "" if _said(e.reason, said) else f": {e.reason}"
            return f"{clock}  run FAILED{why}"
        case ev.GitFinished():
            return _describe_git(clock, e)
        case ev.PlanExpanded():
            ids = ", ".join(str(i.get("id")) for i in e.items)
            return f"{clock}  {e.stage:<18} expanded into {len(e.items)} item(s): {ids}"
        case ev.ReworkRequested():
            return (
                f"{clock}  {e.stage:<18} sent back to {', '.join(e.feedback)} "
                f"(rework round {e.round})"
            )
        case ev.StageEscalated():
            return f"{clock}  {e.stage:<18} escalated to {e.to}: {e.reason}"
        case ev.EscalationDecided():
            fb = f": {e.feedback}" if e.feedback else ""
            return f"{clock}  {e.stage:<18} escalation: {e.decision} by {e.approver}{fb}"
        case ev.RunAdjusted():
            return f"{clock}  run adjusted by {e.by}: {e.action} {e.stage or ''}".rstrip()
        case ev.LeaseTaken():
            if e.previous_owner:
                return f"{clock}  resumed by this process (previous owner {e.previous_owner})"
            return None
        case _:
            return None
    return None


def _describe_git(clock: str, e: ev.GitFinished) -> str | None:
    sha = (e.commit or "")[:10]
    if e.op == "commit" and e.outcome == "done":
        return (
            f"{clock}  {e.stage or '':<18} committed {sha} on {e.branch} ({len(e.files)} file(s))"
        )
    if e.op in ("merge", "adopt") and e.outcome == "done":
        return f"{clock}  {e.stage or '':<18} merged into {e.branch} as {sha}"
    if e.op == "merge" and e.outcome == "conflict":
        return f"{clock}  {e.stage or '':<18} merge conflict in {', '.join(e.files)}"
    if e.op == "land" and e.outcome == "done":
        return f"{clock}  run landed into {e.branch} as {sha}"
    if e.outcome in ("failed", "unresolved", "refused"):
        return f"{clock}  git {e.op} {e.outcome}: {e.output or ', '.join(e.files)}"
    return None
