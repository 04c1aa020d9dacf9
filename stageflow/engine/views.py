"""Read models: what ``status`` shows, shared by the CLI (``--json``) and, later, MCP tools.

Built from a folded ``RunState`` plus artifact metadata; never contains whole artifacts.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from stageflow.base import Model
from stageflow.engine.forecasts import CONFIRM_GATE, ForecastCheck, forecast_check
from stageflow.engine.gitviews import RunGitView, StageGitView, merge_gate, run_git, stage_git
from stageflow.engine.runner import same_model
from stageflow.engine.state import RunState, StageState
from stageflow.usage import Usage


def untitled(schema: dict[str, Any]) -> None:
    """Drop the per-property titles pydantic adds to a published JSON schema: they repeat the
    property names, and the schemas go out with every tools/list."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)


class ReadModel(Model):
    """A read model whose JSON schema is published (MCP output schemas): no property titles."""

    model_config = ConfigDict(defer_build=True, json_schema_extra=untitled)


class ArtifactView(ReadModel):
    stage: str
    name: str
    version: int
    size: int
    preview: str = ""


class AttemptView(ReadModel):
    number: int
    kind: str
    started_at: float | None = None
    outcome: str | None
    model_requested: str | None
    model_resolved: str | None = None
    model_answered: str | None
    model_mismatch: bool = False  # the answering model is not the one asked for
    runner: str | None
    duration_s: float | None
    usage: Usage
    error: str | None = None
    agent: str | None = None
    agent_hash: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    choice: dict[str, Any] | None = None  # how agent and model were chosen (scores, rule)


class EscalationView(ReadModel):
    """An open escalation."""

    to: str
    kind: str  # gate | rework | failure
    reason: str
    findings: str = ""


class StageView(ReadModel):
    id: str
    kind: str  # agent | command | debate
    agent: str | None  # the agent of the latest attempt (a candidate the profiles chose)
    candidates: list[str] = Field(default_factory=list)  # agent: [a, b]
    why: str | None = None  # why this agent and model, when the stage left a choice
    status: str
    attempts: int
    reworks: int
    duration_s: float
    model: str | None
    model_mismatch: bool = False
    usage: Usage
    reason: str | None = None
    summary: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[ArtifactView] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    approval_expires_at: float | None = None
    history: list[AttemptView] = Field(default_factory=list)
    git: StageGitView | None = None
    parent: str | None = None  # the for_each stage this item belongs to
    items: list[str] = Field(default_factory=list)  # a for_each stage's items (sub-stages)
    title: str | None = None  # an item's title
    files: list[str] = Field(default_factory=list)
    escalation: EscalationView | None = None


class WaitingView(ReadModel):
    """A stage that needs a human, and what to review."""

    stage: str  # the stage, or ``cost_confirmation`` for the run's forecast
    kind: str  # approval | gate | escalation | merge (a conflict a human resolves) | confirm
    what: str
    review: list[str] = Field(default_factory=list)  # artifact names to read first
    expires_at: float | None = None
    attempt: int | None = None  # the attempt under review: a decision names it
    human_only: bool = False  # approval by: human: only a person decides (not the assistant)
    approved_by: list[str] = Field(default_factory=list)  # so far, of min_approvals
    min_approvals: int = 1


class WorkspaceView(ReadModel):
    """Where a run's stages work (a git worktree and branch), and what they changed."""

    path: str
    mode: str  # worktree | in_place | read_only
    branch: str | None = None
    base: str | None = None
    files_changed: int | None = None  # filled in once the run has ended
    insertions: int | None = None
    deletions: int | None = None
    diff: str | None = None  # one line per file


class RunView(ReadModel):
    run_id: str
    template: str
    task: str
    status: str
    runner: str
    created_at: float
    updated_at: float
    stages: list[StageView]
    waiting: list[WaitingView] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    usage: Usage
    spent_usd: float
    orchestration_usd: float = 0.0  # of it (and of template="auto"): moderators, choices
    budget_usd: float | None
    reason: str | None = None
    next_action: str
    owner: str | None = None
    seq: int
    workspace: WorkspaceView | None = None
    forecast: ForecastCheck | None = None  # the forecast made at the start, against the spend
    git: RunGitView | None = None
    adjustments: list[str] = Field(default_factory=list)  # run-time changes, oldest first


class RunListItem(ReadModel):
    run_id: str
    template: str
    task: str
    status: str
    created_at: float
    updated_at: float
    spent_usd: float


def _stage_view(state: RunState, st: StageState, previews: dict[tuple[str, str], str]) -> StageView:
    spec = state.stage_spec(st.id)
    cur = st.current
    model = None
    mismatch = False
    if cur is not None:
        asked = cur.model_resolved or cur.model_requested
        answered = cur.model_answered
        # "claude-opus-4-7>claude-haiku-4-5" shows both when another model answered
        mismatch = cur.runner not in (None, "offline", "command") and not same_model(
            asked, answered
        )
        model = f"{asked}>{answered}" if mismatch else (answered or asked)
    elif spec.agent and spec.agent in state.agents:
        model = spec.model or state.agents[spec.agent].model
    choice = cur.choice if cur is not None else None
    why = choice.get("why") if choice is not None else None
    return StageView(
        id=st.id,
        kind=spec.kind,
        agent=(cur.agent if cur is not None and cur.agent else spec.agent),
        candidates=list(spec.candidates),
        why=why if isinstance(why, str) else None,
        status=st.status,
        attempts=st.attempt,
        reworks=st.reworks,
        duration_s=round(st.duration_s, 3),
        model=model,
        model_mismatch=mismatch,
        usage=st.usage,
        reason=st.reason,
        summary=st.summary,
        outputs=st.outputs,
        depends_on=spec.depends_on,
        approval_expires_at=st.approval_expires_at,
        git=stage_git(state, st.id),
        artifacts=[
            ArtifactView(
                stage=st.id,
                name=n,
                version=r.version,
                size=r.size,
                preview=previews.get((st.id, n), ""),
            )
            for n, r in sorted(st.artifacts.items())
        ],
        history=[
            AttemptView(
                number=a.number,
                kind=a.kind,
                started_at=a.started_at,
                outcome=a.outcome,
                model_requested=a.model_requested,
                model_resolved=a.model_resolved,
                model_answered=a.model_answered,
                model_mismatch=a.runner not in (None, "offline", "command")
                and not same_model(a.model_resolved or a.model_requested, a.model_answered),
                runner=a.runner,
                duration_s=None
                if a.finished_at is None
                else round(a.finished_at - a.started_at, 3),
                usage=a.usage,
                error=a.error,
                agent=a.agent,
                agent_hash=a.agent_hash,
                context=a.context,
                choice=a.choice,
            )
            for a in st.attempts
        ],
        parent=state.parent_of.get(st.id),
        items=list(state.children.get(st.id, ())),
        title=_title(spec.description) if st.id in state.parent_of else None,
        files=list(spec.files),
        escalation=EscalationView(
            to=st.escalation.to,
            kind=st.escalation.kind,
            reason=st.escalation.reason,
            findings=st.escalation.findings,
        )
        if st.escalation is not None
        else None,
    )


def _title(description: str) -> str:
    """An item's title: its description's first line is ``Work item `t1` of the plan: T``."""
    first = description.split("\n", 1)[0]
    return first.split(": ", 1)[1] if ": " in first else first


def next_action(state: RunState, waiting: list[WaitingView]) -> str:
    """One sentence telling the human what to do next."""
    rid = state.run_id
    if state.ended == "completed":
        if state.git.on and not state.git.landed:
            into = state.git.target or "BRANCH"
            return (
                f"done: review the run branch {state.git.branch}, then `stageflow land {rid}` "
                f"(a squash commit on {into}; --strategy merge|rebase, --into BRANCH)"
            )
        return f"done: read an artifact with `stageflow artifact {rid} STAGE NAME`"
    if state.ended == "failed":
        return f"fix what failed (above), then `stageflow retry {rid}`; or leave it"
    if state.ended == "cancelled":
        return "cancelled; start a new run if needed"
    if state.paused:
        if state.budget_paused:
            return (
                f"paused: budget reached; `stageflow resume {rid} --budget <usd>` to "
                f"continue with a higher budget, or `stageflow cancel {rid}`"
            )
        return f"paused; `stageflow resume {rid}` to continue"
    if waiting and waiting[0].kind == "confirm":
        return (
            f"confirm the cost forecast to start: `stageflow approve {rid}`, or decline with "
            f'`stageflow reject {rid} --feedback "..."`'
        )
    if waiting:
        w = waiting[0]
        verb = {
            "approval": "approve the result of",
            "gate": "decide the gate of",
            "escalation": "decide the escalation of",
        }.get(w.kind, "decide")
        which = f"--stage {w.stage}" + (f" --attempt {w.attempt}" if w.attempt else "")
        return (
            f"{verb} '{w.stage}': `stageflow approve {rid} {which}` or "
            f'`stageflow reject {rid} {which} --feedback "..."`'
        )
    running = state.running()
    if running:
        return f"wait: {', '.join(running)} running"
    return "wait: the scheduler is picking the next stages"


def runner_in_use(state: RunState) -> str:
    """The runner of the run's latest agent attempt (a retry may use another runner than the
    one the run was created with), else the one it was created with."""
    latest: tuple[float, str] | None = None
    for st in state.stages.values():
        for a in st.attempts:
            agent = a.runner and a.runner != "command" and a.finished_at is not None
            if agent and (latest is None or (a.finished_at or 0.0) >= latest[0]):
                latest = (a.finished_at or 0.0, a.runner or "")
    if latest is None:
        return state.runner
    label = state.runner  # e.g. "offline (scripted, no model calls)", "auto -> anthropic"
    if label.split(" ")[0] == latest[1] or label.endswith(f"-> {latest[1]}"):
        return label
    return latest[1]


def with_live_spend(view: RunView, live: dict[str, Usage]) -> RunView:
    """``view`` with the spend of running attempts (from the ledger, by stage) added to their
    attempt, stage and run: what they have spent and hold for requests in flight so far."""
    if not live:
        return view
    extra = Usage()
    for stage in view.stages:
        usage = live.get(stage.id)
        if usage is None:
            continue
        extra = extra + usage
        stage.usage = stage.usage + usage
        if stage.history and stage.history[-1].outcome is None:
            stage.history[-1].usage = stage.history[-1].usage + usage
    view.usage = view.usage + extra
    view.spent_usd = round(view.spent_usd + extra.cost_usd, 10)
    return view


def build_view(state: RunState, previews: dict[tuple[str, str], str] | None = None) -> RunView:
    """The dashboard of one run."""
    previews = previews or {}
    stages = [_stage_view(state, st, previews) for st in state.stages.values()]
    waiting: list[WaitingView] = []
    blockers: list[str] = []
    check = forecast_check(
        state.forecast,
        spent_usd=state.spent_usd,
        stage_costs={sid: st.usage.cost_usd for sid, st in state.stages.items()},
    )
    if state.ended is None and state.confirmation == "pending":
        waiting.append(_confirmation(state, check))
    for st in state.stages.values():
        s = state.stage_spec(st.id)
        open_ = state.ended is None  # an ended run waits for nobody, whatever its stages say
        if open_ and st.status == "blocked" and st.escalation is not None:
            waiting.append(_escalation_wait(state, st))
        elif open_ and st.status == "awaiting_approval":
            what = (
                s.approval.prompt
                if s.approval and s.approval.prompt
                else f"review the output of '{s.id}' ({st.summary or 'see artifacts'})"
            )
            waiting.append(
                WaitingView(
                    stage=s.id,
                    kind="approval",
                    what=what,
                    review=sorted(st.artifacts),
                    expires_at=st.approval_expires_at,
                    attempt=st.attempt,
                    human_only=s.approval is not None and s.approval.by == "human",
                    approved_by=sorted(set(st.approvals)),
                    min_approvals=s.approval.min_approvals if s.approval else 1,
                )
            )
        elif open_ and st.status == "blocked" and s.id in state.git.merge_stages:
            what, review = merge_gate(state, s.id, st.reason)
            human_only = s.approval is not None and s.approval.by == "human"
            waiting.append(
                WaitingView(
                    stage=s.id, kind="merge", what=what, review=review, human_only=human_only
                )
            )
        elif open_ and st.status == "blocked":
            waiting.append(
                WaitingView(
                    stage=s.id,
                    kind="gate",
                    what=f"gate condition is false: {s.gate}; approve to run the stage anyway, "
                    f"reject to fail it",
                    review=[f"{d}" for d in s.depends_on],
                )
            )
        elif (st.status == "failed" and not st.tolerated) or (
            st.status == "attempt_failed" and st.budget_failed
        ):
            blockers.append(f"{s.id}: {st.reason}")
    return RunView(
        run_id=state.run_id,
        template=state.template,
        task=state.task,
        status=state.status,
        runner=runner_in_use(state),
        created_at=state.created_at,
        updated_at=state.updated_at,
        stages=stages,
        waiting=waiting,
        blockers=blockers,
        usage=state.usage,
        spent_usd=state.spent_usd,
        orchestration_usd=round(state.orchestration, 10),
        budget_usd=state.budget_usd,
        reason=state.end_reason or state.pause_reason,
        next_action=next_action(state, waiting),
        owner=state.owner,
        seq=state.seq,
        forecast=check,
        git=run_git(state),
        adjustments=list(state.adjustments),
    )


def _escalation_wait(state: RunState, st: StageState) -> WaitingView:
    esc = st.escalation
    assert esc is not None
    if esc.kind == "gate":
        options = "approve to run the stage anyway, reject to fail it"
    elif esc.kind == "failure":
        options = "approve to run it again, reject to apply its on_failure"
    else:
        options = "approve to accept the result as it is, reject with feedback for one more round"
    findings = f"; open findings:\n{esc.findings}" if esc.findings else ""
    review = (
        sorted(st.artifacts) if esc.kind == "rework" else list(state.stage_spec(st.id).depends_on)
    )
    return WaitingView(
        stage=st.id,
        kind="escalation",
        what=f"escalated to a human: {esc.reason}; {options}{findings}",
        review=review,
        attempt=st.attempt if esc.kind != "gate" else None,
        human_only=True,  # escalated to a person: the assistant's tool call cannot decide it
    )


def _confirmation(state: RunState, check: ForecastCheck | None) -> WaitingView:
    """The run's wait for a human to confirm its cost forecast."""
    limit = f"${state.confirm_above_usd:.2f}" if state.confirm_above_usd is not None else "?"
    if check is None:
        what = (
            f"no cost forecast could be made and [budget] confirm_above_usd is {limit}: "
            "confirm to start the run, reject to cancel it"
        )
    else:
        what = (
            f"the forecast cost is ${check.p50_usd:.2f} (p50) to ${check.p90_usd:.2f} (p90), "
            f"above confirm_above_usd {limit}: confirm to start the run, reject to cancel it"
        )
    return WaitingView(stage=CONFIRM_GATE, kind="confirm", what=what)
