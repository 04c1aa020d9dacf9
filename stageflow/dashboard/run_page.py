"""One run's page: cost against budget, what waits (with the decision forms), the DAG with live
stage states, the stages' models, tokens and cost, the artifacts as Markdown, the workspace and
its diff, and the audit chain. Each ``<section>`` carries a ``data-key``; the page's script
swaps in only the sections whose key changed, so feedback being typed survives an update."""

from __future__ import annotations

from dataclasses import dataclass, field

from stageflow.dashboard.html import esc, money, status_badge, when
from stageflow.dashboard.markdown import render_markdown
from stageflow.engine.views import RunView, StageView

__all__ = ["RunPage", "render_run"]

DONE = ("succeeded", "skipped", "failed", "cancelled")


@dataclass
class RunPage:
    """What the run page shows besides the run's view."""

    view: RunView
    artifacts: dict[tuple[str, str], str] = field(default_factory=dict)
    audit_problems: list[str] | None = None  # None: not checked
    audit_entries: int = 0
    patch: str | None = None  # the worktree's diff against its base, now
    notice: str | None = None
    error: str | None = None


def _layers(stages: list[StageView]) -> list[list[StageView]]:
    """Stages by depth in the DAG (a stage is one column right of its deepest need)."""
    depth: dict[str, int] = {}
    by_id = {s.id: s for s in stages}

    def level(sid: str, seen: frozenset[str] = frozenset()) -> int:
        if sid in depth:
            return depth[sid]
        deps = [d for d in by_id[sid].depends_on if d in by_id and d not in seen]
        depth[sid] = 1 + max((level(d, seen | {sid}) for d in deps), default=-1)
        return depth[sid]

    for s in stages:
        level(s.id)
    cols: list[list[StageView]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for s in stages:
        cols[depth[s.id]].append(s)
    return cols


def _summary(page: RunPage) -> str:
    v = page.view
    budget = v.budget_usd
    meter = ""
    if budget:
        share = min(v.spent_usd / budget, 1.0) if budget > 0 else 1.0
        meter = f'<meter min="0" max="1" value="{share:.3f}"></meter>'
    done = sum(1 for s in v.stages if s.status in DONE)
    forecast = ""
    if 0 < done < len(v.stages) and v.spent_usd > 0:
        guess = v.spent_usd * len(v.stages) / done
        forecast = f" · forecast {money(guess)} (spend per finished stage x stages)"
    msgs = ""
    if page.notice:
        msgs += f'<p class="notice" id="notice">{esc(page.notice)}</p>'
    if page.error:
        msgs += f'<p class="error" id="error">{esc(page.error)}</p>'
    return (
        f'<section id="summary" data-key="{v.seq}">{msgs}'
        f"<h1>{esc(v.template)} <small>{esc(v.run_id)}</small></h1>"
        f'<p class="task">{esc(v.task)}</p>'
        f"<p>state {status_badge(v.status)} · runner {esc(v.runner)} · updated "
        f"{when(v.updated_at)}</p>"
        f'<p class="cost">cost <b id="spent">{money(v.spent_usd)}</b> of budget '
        f"{money(budget)} {meter}{forecast}</p>"
        f'<p class="next">next: {esc(v.next_action)}</p>'
        + (f'<p class="reason">{esc(v.reason)}</p>' if v.reason else "")
        + "</section>"
    )


def _decide(page: RunPage, csrf: str) -> str:
    v = page.view
    key = ",".join(f"{w.stage}@{w.attempt}" for w in v.waiting) or "none"
    forms = []
    for w in v.waiting:
        attempt = f'<input type="hidden" name="attempt" value="{w.attempt}">' if w.attempt else ""
        review = ", ".join(esc(r) for r in w.review)
        policy = "only a person decides" if w.human_only else ""
        if w.min_approvals > 1:
            done = ", ".join(esc(a) for a in w.approved_by) or "nobody yet"
            policy += f"{'; ' if policy else ''}{len(w.approved_by)} of {w.min_approvals} "
            policy += f"approvals ({done})"
        forms.append(
            f'<form method="post" action="/runs/{esc(v.run_id)}/decide" class="decide" '
            f'data-stage="{esc(w.stage)}">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="stage" value="{esc(w.stage)}">{attempt}'
            f"<h3>{esc(w.kind)}: {esc(w.stage)}"
            + (f" · attempt {w.attempt}" if w.attempt else "")
            + f"</h3><p>{esc(w.what)}</p>"
            + (f"<p>review first: {review}</p>" if review else "")
            + (f'<p class="policy">{policy}</p>' if policy else "")
            + '<textarea name="feedback" rows="3" placeholder="feedback (needed to reject)">'
            "</textarea>"
            f'<button type="submit" name="decision" value="approve" '
            f'id="approve-{esc(w.stage)}">Approve</button> '
            f'<button type="submit" name="decision" value="reject" '
            f'id="reject-{esc(w.stage)}">Reject with feedback</button></form>'
        )
    body = "".join(forms) or "<p class=muted>Nothing waits for a decision.</p>"
    return f'<section id="decide" data-key="{esc(key)}"><h2>Waiting for you</h2>{body}</section>'


def _dag(v: RunView) -> str:
    cols = []
    for col in _layers(v.stages):
        boxes = "".join(
            f'<div class="stage s-{esc(s.status)}" data-stage="{esc(s.id)}" '
            f'data-status="{esc(s.status)}"><b>{esc(s.id)}</b>'
            f'<span class="st">{esc(s.status)}</span>'
            + (f"<small>after {esc(', '.join(s.depends_on))}</small>" if s.depends_on else "")
            + "</div>"
            for s in col
        )
        cols.append(f'<div class="col">{boxes}</div>')
    dag = f'<div class="dag">{"".join(cols)}</div>'
    return f'<section id="dag" data-key="{v.seq}"><h2>Stages</h2>{dag}</section>'


def _stages(v: RunView) -> str:
    rows = "".join(
        f"<tr><td>{esc(s.id)}</td><td>{status_badge(s.status)}</td>"
        f"<td>{esc(s.agent or s.kind)}</td><td>{esc(s.model or '-')}</td>"
        f"<td class=num>{s.attempts}</td><td class=num>{s.usage.input_tokens:,}</td>"
        f"<td class=num>{s.usage.output_tokens:,}</td><td class=num>{money(s.usage.cost_usd)}</td>"
        f"<td>{esc(s.summary[:200])}</td></tr>"
        for s in v.stages
    )
    head = (
        "<tr><th>stage</th><th>state</th><th>agent</th><th>model</th><th>attempts</th>"
        "<th>input tok</th><th>output tok</th><th>cost</th><th>summary</th></tr>"
    )
    return (
        f'<section id="stages" data-key="{v.seq}"><h2>Models, tokens, cost</h2>'
        f"<table>{head}{rows}</table></section>"
    )


def _artifacts(page: RunPage) -> str:
    v = page.view
    items = []
    for s in v.stages:
        for a in s.artifacts:
            text = page.artifacts.get((a.stage, a.name))
            body = render_markdown(text) if text is not None else f"<pre>{esc(a.preview)}</pre>"
            items.append(
                f'<details class="artifact" open><summary>{esc(a.stage)}/{esc(a.name)} '
                f"v{a.version} · {a.size:,} bytes</summary>"
                f'<div class="md">{body}</div></details>'
            )
    body = "".join(items) or "<p class=muted>No artifacts yet.</p>"
    return f'<section id="artifacts" data-key="{v.seq}"><h2>Artifacts</h2>{body}</section>'


def _patch_html(patch: str) -> str:
    lines = []
    for line in patch.splitlines():
        cls = ""
        if line.startswith(("+++", "---", "diff ", "index ")):
            cls = "meta"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        elif line.startswith("@@"):
            cls = "hunk"
        lines.append(f'<span class="{cls}">{esc(line)}</span>' if cls else esc(line))
    return '<pre class="patch">' + "\n".join(lines) + "</pre>"


def _workspace(page: RunPage) -> str:
    v = page.view
    ws = v.workspace
    if ws is None:
        body = "<p class=muted>No workspace.</p>"
    else:
        stats = ""
        if ws.files_changed is not None:
            stats = f"<p>{ws.files_changed} files, +{ws.insertions} -{ws.deletions}</p>"
        diff = f"<pre class=diff>{esc(ws.diff)}</pre>" if ws.diff else ""
        if page.patch:
            diff += _patch_html(page.patch)
        elif page.patch is not None:
            diff += "<p class=muted>no changes yet</p>"
        body = (
            f"<p>{esc(ws.mode)} at <code>{esc(ws.path)}</code>"
            + (f" on branch <code>{esc(ws.branch)}</code>" if ws.branch else "")
            + (f" from <code>{esc(ws.base)}</code>" if ws.base else "")
            + f"</p>{stats}{diff}"
        )
    return f'<section id="workspace" data-key="{v.seq}"><h2>Workspace</h2>{body}</section>'


def _audit(page: RunPage) -> str:
    problems = page.audit_problems
    if problems is None:
        body = "<p class=muted>not checked</p>"
    elif not problems:
        body = (
            f'<p class="ok" id="audit-ok">hash chain verified: {page.audit_entries} entries, '
            "head matches the run</p>"
        )
    else:
        body = '<ul class="error">' + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>"
    return f'<section id="audit" data-key="{page.view.seq}"><h2>Audit chain</h2>{body}</section>'


def render_run(page: RunPage, csrf: str, *, live_query: str = "") -> str:
    """The run page's live part (the whole page's body, and what SSE updates re-fetch)."""
    v = page.view
    return (
        f'<div id="live" data-src="/runs/{esc(v.run_id)}/live{esc(live_query)}">'
        + _summary(page)
        + _decide(page, csrf)
        + _dag(v)
        + _stages(v)
        + _artifacts(page)
        + _workspace(page)
        + _audit(page)
        + "</div>"
    )
