"""The dashboard's Starlette app: pages, the SSE change stream and the decision POST.

``dashboard_app`` serves one project's ``Service``. Pages are rendered on the server (escaped,
see ``html.py``) and need no build step; ``static/dashboard.js`` listens to ``/events`` and
swaps in the sections that changed. A decision goes through ``Service.decide`` with the attempt
the page showed, by the OS user ``via="dashboard"``; ``on_decided`` then lets the embedding
process continue the run (the standalone dashboard and ``serve`` drive it).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stageflow.dashboard.costs_page import render_costs
from stageflow.dashboard.feed import POLL_S, watch_changes
from stageflow.dashboard.guard import DashboardGuard, Session
from stageflow.dashboard.html import esc, layout
from stageflow.dashboard.list_page import Waiting, render_runs
from stageflow.dashboard.run_page import RunPage, render_run
from stageflow.engine.costs import GROUP_BY, GroupBy, cost_report, parse_since
from stageflow.engine.service import Service
from stageflow.errors import InvalidArgument, InvalidState, NotFound, StageflowError
from stageflow.store.store import Store
from stageflow.workspace.view import workspace_patch

__all__ = ["DashboardDeps", "dashboard_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LIST_LIMIT = 100  # recent runs on the list page (every waiting run is listed too)
ARTIFACT_CHARS = 200_000  # an artifact's first characters rendered on the run page
PING_S = 15.0
HUMAN_WAIT = ("awaiting_approval", "blocked")
ACTIVE = ("running", "waiting", "paused")


@dataclass
class DashboardDeps:
    """What the dashboard serves: the project's store and service, and who drives runs."""

    service: Service
    store: Store
    on_decided: Callable[[str], None] | None = None
    user: str = ""
    poll_s: float = POLL_S


def _session(request: Request) -> Session:
    session: Session = request.scope["state"]["session"]
    return session


def dashboard_app(
    deps: DashboardDeps | Callable[[], DashboardDeps],
    *,
    token: str,
    host: str,
    allowed_hosts: Iterable[str] = (),
) -> DashboardGuard:
    """The dashboard for ``deps`` (or a callable giving them once the embedding app started),
    behind ``DashboardGuard`` (token, session cookie, CSRF, Host/Origin)."""
    fixed = deps if isinstance(deps, DashboardDeps) else None

    def get() -> DashboardDeps:
        return fixed if fixed is not None else deps()  # type: ignore[operator]

    def who() -> str:
        # the person, as the CLI records them (via says "dashboard"): one person approving
        # from the terminal and the browser is one approver, never two of min_approvals
        return get().user or _os_user()

    async def runs_page(request: Request) -> Response:
        d = get()
        rows = await d.store.list_runs(limit=LIST_LIMIT)
        seen = {r.run_id for r in rows}
        rows += [
            r
            for r in await d.store.list_runs(limit=-1, statuses=("waiting",))
            if r.run_id not in seen
        ]
        waiting = {r.run_id: await _waits(d.service, r.run_id) for r in rows if r.status in ACTIVE}
        body = render_runs(rows, waiting)
        return HTMLResponse(layout("runs", body, csrf=_session(request).csrf, live="/events"))

    async def run_page(request: Request) -> Response:
        return await _run_response(request, full=True)

    async def run_live(request: Request) -> Response:
        return await _run_response(request, full=False)

    async def _run_response(
        request: Request,
        *,
        full: bool,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        d = get()
        run_id = request.path_params["run_id"]
        try:
            page = await _build_page(d, run_id)
        except NotFound as exc:
            return HTMLResponse(
                layout("not found", f"<p class=error>{esc(exc)}</p>", csrf=_session(request).csrf),
                status_code=404,
            )
        done = request.query_params.get("done")
        page.notice = notice or (
            f"recorded: {done} by {who()} (dashboard)" if done in ("approve", "reject") else None
        )
        page.error = error
        csrf = _session(request).csrf
        # after a decision the updates keep saying it was recorded
        query = f"?done={done}" if done in ("approve", "reject") else ""
        body = render_run(page, csrf, live_query=query)
        if not full:
            return HTMLResponse(body, status_code=status)
        live = f"/events?run={run_id}&seq={page.view.seq}"
        return HTMLResponse(layout(run_id, body, csrf=csrf, live=live), status_code=status)

    async def decide(request: Request) -> Response:
        d = get()
        run_id = request.path_params["run_id"]
        form = await request.form()
        if not _session(request).csrf_ok(_text(form.get("csrf"))):
            return Response("missing or wrong CSRF token", status_code=403, media_type="text/plain")
        decision = _text(form.get("decision"))
        stage = _text(form.get("stage")) or None
        feedback = (_text(form.get("feedback")) or "").strip() or None
        raw_attempt = _text(form.get("attempt"))
        try:
            if decision not in ("approve", "reject"):
                raise InvalidArgument(f"decision must be approve or reject, got {decision!r}")
            attempt = int(raw_attempt) if raw_attempt else None
            await d.service.decide(
                run_id,
                stage=stage,
                decision="approve" if decision == "approve" else "reject",
                feedback=feedback,
                approver=who(),
                attempt=attempt,
                via="dashboard",
            )
        except ValueError:
            return await _run_response(
                request,
                full=True,
                error=f"attempt must be a number, got {raw_attempt!r}",
                status=400,
            )
        except (InvalidState, InvalidArgument, NotFound) as exc:
            code = (
                409 if isinstance(exc, InvalidState) else 404 if isinstance(exc, NotFound) else 400
            )
            return await _run_response(request, full=True, error=str(exc), status=code)
        if d.on_decided is not None:
            d.on_decided(run_id)
        return RedirectResponse(f"/runs/{run_id}?done={decision}", status_code=303)

    async def costs(request: Request) -> Response:
        d = get()
        since_text = request.query_params.get("since", "7d")
        by: str = request.query_params.get("by", "template")
        csrf = _session(request).csrf
        try:
            if by not in GROUP_BY:
                raise InvalidArgument(f"by must be one of {', '.join(GROUP_BY)}, got {by!r}")
            since = parse_since(since_text)
            group: GroupBy = by
            report = await cost_report(d.store, since=since, by=group)
        except InvalidArgument as exc:
            return HTMLResponse(
                layout("costs", f"<p class=error>{esc(exc)}</p>", csrf=csrf), status_code=400
            )
        return HTMLResponse(layout("costs", render_costs(report, since_text), csrf=csrf))

    async def events(request: Request) -> Response:
        d = get()
        run_id = request.query_params.get("run") or None
        raw_seq = request.query_params.get("seq", "")
        seen = int(raw_seq) if raw_seq.isdigit() else None
        if run_id is not None:
            try:
                await d.store.get_run(run_id)
            except NotFound as exc:
                return Response(str(exc), status_code=404, media_type="text/plain")
        return StreamingResponse(
            _sse(d, run_id, seen),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/runs/{run_id}", run_page),
            Route("/runs/{run_id}/live", run_live),
            Route("/runs/{run_id}/decide", decide, methods=["POST"]),
            Route("/costs", costs),
            Route("/events", events),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={InvalidState: _unavailable},
    )
    return DashboardGuard(app, token=token, host=host, allowed_hosts=allowed_hosts)


async def _sse(d: DashboardDeps, run_id: str | None, seen: int | None) -> AsyncIterator[str]:
    """``change`` events (data: a counter) whenever the watched head moves; pings between."""
    yield "retry: 1000\n\n: connected\n\n"
    n = 0
    async for head in watch_changes(d.store, run_id, poll_s=d.poll_s, idle_s=PING_S, seen=seen):
        if head is None:
            yield ": ping\n\n"  # finds a client that went away
            continue
        n += 1
        yield f"event: change\ndata: {n}\n\n"


async def _waits(service: Service, run_id: str) -> list[Waiting]:
    state = await service.state(run_id)
    waits = []
    for sid, st in state.stages.items():
        if st.status not in HUMAN_WAIT:
            continue
        approval = st.status == "awaiting_approval"
        policy = state.stage_spec(sid).approval if approval else None
        who = "a person"
        if policy is not None:
            if policy.approvers:
                who = "one of " + ", ".join(policy.approvers)
            elif policy.by == "any":
                who = "a person or the assistant"
            if policy.min_approvals > 1:
                who += f" ({len(set(st.approvals))} of {policy.min_approvals} approvals)"
        waits.append(
            Waiting(
                stage=sid,
                kind="approval" if approval else "gate",
                attempt=st.attempt if approval else None,
                who=who,
            )
        )
    return waits


async def _build_page(d: DashboardDeps, run_id: str) -> RunPage:
    view = await d.service.view(run_id)
    page = RunPage(view=view)
    if view.workspace is not None and view.workspace.mode == "worktree":
        page.patch = await workspace_patch(d.service.settings.project, run_id)
    for s in view.stages:
        for a in s.artifacts:
            try:
                rec = await d.store.get_artifact(run_id, a.stage, a.name, a.version)
            except NotFound:
                continue
            page.artifacts[(a.stage, a.name)] = rec.content[:ARTIFACT_CHARS]
    try:
        report = await d.service.audit(run_id)
        page.audit_problems, page.audit_entries = report.problems, len(report.events)
    except StageflowError as exc:
        page.audit_problems = [str(exc)]
    return page


async def _unavailable(_request: Request, exc: Exception) -> Response:
    """The embedding server is not running (yet): nothing to serve."""
    return Response(str(exc), status_code=503, media_type="text/plain")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"
