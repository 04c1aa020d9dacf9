"""The compact read models the MCP tools return by default, and their assistant-facing advice.

A client such as Claude Code hands the model a tool's ``structuredContent``, so every poll of
``workflow_status`` costs what the result weighs. The briefs carry what the assistant acts on:
per-stage state, model, cost and artifact names, the gates waiting for a human with what to
show them, and ``next_action`` written for the assistant (a tool call, never a shell command).
Per-attempt history and context manifests stay in the full read models (``detail: "full"``,
the ``stageflow://runs/{id}`` resource, ``stageflow status --json``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from stageflow.engine.catalog_view import TemplateInfo, TemplatesResult
from stageflow.engine.views import ReadModel, RunView, StageView

TEXT_BRIEF = 200  # characters of a task, reason or gate text a brief carries
DESCRIPTION_BRIEF = 160
AGENT_BRIEF = 80


def short(text: str, limit: int = TEXT_BRIEF) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- runs -----------------------------------------------------------------------------------


class ItemBrief(ReadModel):
    """An item of a for_each stage (sub-stage <stage>.<id>)."""

    # ``after`` and ``reason`` are left out when empty
    id: str
    status: str
    after: list[str] = Field(default_factory=list)
    cost_usd: float = 0.0
    attempts: int = 0
    reason: str | None = None

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v or k not in ("after", "reason")}


class StageBrief(ReadModel):
    id: str
    status: str
    agent: str | None = Field(None, description="the agent; absent for a command stage")
    model: str | None = Field(None, description="asked>answered when another model answered")
    cost_usd: float = 0.0
    attempts: int = 0
    reworks: int = 0
    artifacts: list[str] = Field(default_factory=list, description="artifact names (latest)")
    reason: str | None = Field(None, description="why it failed, was skipped or is blocked")
    why: str | None = Field(None, description="why this agent and model")
    git: str | None = Field(None, description="branch, commit, files changed, merge state")
    items: list[ItemBrief] | None = None

    @model_serializer(mode="wrap")
    def _omit_no_git(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.git is None:  # runs without a git worktree: keep the brief as small as before
            data.pop("git", None)
        return data


class GateBrief(ReadModel):
    """A stage waiting for a human, and what to show them."""

    stage: str
    kind: str = Field(
        description="approval (review the result), gate (a condition is false), escalation, "
        "merge (a conflict to resolve) or confirm (the cost forecast)"
    )
    what: str
    show: list[str] = Field(
        default_factory=list, description="artifacts to read first, as stage/name"
    )
    attempt: int | None = Field(None, description="the attempt under review; pass it back")
    human_only: bool = Field(False, description="only the person decides; the server asks them")


class RunBrief(ReadModel):
    """One run, compact: what to tell the human and what to do next."""

    run_id: str
    template: str
    task: str
    status: str = Field(description="running, waiting, paused, completed, failed or cancelled")
    runner: str
    spent_usd: float
    orchestration_usd: float | None = Field(
        None, description="of the spend: debate moderators and the orchestrator's choices"
    )
    budget_usd: float | None = None
    stages: list[StageBrief]
    waiting: list[GateBrief] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    reason: str | None = None
    forecast_p50_usd: float | None = None
    forecast_p90_usd: float | None = None
    adjustments: list[str] = Field(default_factory=list)
    owner: str | None = Field(None, description="the process executing the run")
    next_action: str = Field(description="what the assistant should do next")
    seq: int = Field(description="log position; it changes whenever the run does")


def _reason(s: StageView) -> str | None:
    return short(s.reason) if s.reason and s.status != "succeeded" else None


def _stage_brief(s: StageView, by_id: dict[str, StageView]) -> StageBrief:
    items = [by_id[i] for i in s.items if i in by_id]
    cost = s.usage.cost_usd + sum(i.usage.cost_usd for i in items)
    prefix = f"{s.id}."
    model = s.model
    if items:  # the items' model(s)
        model = "|".join(dict.fromkeys(i.model for i in items if i.model)) or s.model
    return StageBrief(
        id=s.id,
        status=s.status,
        agent=s.agent,
        model=model,
        cost_usd=round(cost, 6),
        attempts=s.attempts,
        reworks=s.reworks,
        artifacts=[a.name for a in s.artifacts],
        reason=_reason(s),
        why=short(s.why, 120) if s.why else None,
        git=_git_brief(s),
        items=[
            ItemBrief(
                id=i.id.removeprefix(prefix),
                status=i.status,
                after=[d.removeprefix(prefix) for d in i.depends_on],
                cost_usd=round(i.usage.cost_usd, 6),
                attempts=i.attempts,
                reason=_reason(i),
            )
            for i in items
        ]
        if s.items
        else None,
    )


def _shown(view: RunView, stage: str) -> list[str]:
    """``stage/artifact`` of a stage, or of each item of a for_each stage."""
    by_id = {s.id: s for s in view.stages}
    found = by_id.get(stage)
    if found is None:
        return []
    sources = [by_id[i] for i in found.items if i in by_id] or [found]
    return [f"{src.id}/{a.name}" for src in sources for a in src.artifacts]


def _git_brief(s: StageView) -> str | None:
    g = s.git
    if g is None:
        return None
    files = f", {g.files_changed} file(s)" if g.files_changed else ""
    return f"{g.branch} {(g.commit or '-')[:10]}{files}: {g.merge}"


def _gates(view: RunView) -> list[GateBrief]:
    out = []
    for w in view.waiting:
        if w.kind == "confirm":  # the run's forecast: no stage to look at
            out.append(GateBrief(stage=w.stage, kind=w.kind, what=short(w.what)))
            continue
        stage = next(s for s in view.stages if s.id == w.stage)
        if w.kind == "approval":
            show = [f"{w.stage}/{a.name}" for a in stage.artifacts]
        elif w.kind == "merge":  # the conflict's report: each file's base and both sides
            show = list(w.review)
        elif w.kind == "escalation":  # what the findings are about
            show = [f"{w.stage}/{a.name}" for a in stage.artifacts] or [
                f for d in stage.depends_on for f in _shown(view, d)
            ]
        else:  # a false gate: the upstream stages' results explain it
            show = [f for d in stage.depends_on for f in _shown(view, d)]
        out.append(
            GateBrief(
                stage=w.stage,
                kind=w.kind,
                what=short(w.what),
                show=show,
                attempt=w.attempt,
                human_only=w.human_only,
            )
        )
    return out


def next_step(view: RunView, gates: list[GateBrief] | None = None) -> str:
    """The next action, for the assistant: who to ask, what to show, which tool to call."""
    rid = view.run_id
    gates = _gates(view) if gates is None else gates
    if view.status == "paused":
        also = f" (stage {gates[0].stage} also waits for a human)" if gates else ""
        if view.budget_usd is not None and view.spent_usd >= view.budget_usd:
            return (
                f"paused at its budget (${view.spent_usd:.2f} of ${view.budget_usd:.2f}){also}: "
                "ask the human for a higher budget; then call "
                f"workflow_control(run_id='{rid}', action='resume', budget_usd=<new cap>)"
            )
        return (
            f"paused ({view.reason or 'by request'}){also}: ask the human whether to continue; "
            f"then call workflow_control(run_id='{rid}', action='resume')"
        )
    if gates and gates[0].kind == "confirm":
        return (
            f"the human must confirm spending this much ({gates[0].what}): call "
            f"workflow_approve(run_id='{rid}', decision='approve') and the server asks them, "
            "or decision='reject' with their reason (the run is cancelled)"
        )
    if gates:
        g = gates[0]
        shown = f" (artifacts to show: {', '.join(g.show)})" if g.show else ""
        if g.kind == "approval":
            ask = f"ask the human whether to approve stage {g.stage}{shown}"
        elif g.kind == "merge":
            ask = f"show the human the merge conflict{shown} and ask them to resolve it ({g.what})"
        elif g.kind == "escalation":
            ask = (
                f"stage {g.stage} was escalated to a human ({short(g.what, 120)}): ask the human "
                f"to decide{shown}; only they may"
            )
        else:
            ask = f"ask the human whether to run stage {g.stage} although its gate is false{shown}"
        which = f", attempt={g.attempt}" if g.attempt else ""
        if g.human_only:
            return (
                f"{ask}; then call workflow_approve(run_id='{rid}', stage='{g.stage}'{which}, "
                "decision=<their answer>): the server asks them for the decision itself"
            )
        return (
            f"{ask}; then call workflow_approve(run_id='{rid}', stage='{g.stage}'{which}, "
            "decision='approve'), or decision='reject' with their feedback"
        )
    if view.status == "completed":
        finals = [f"{s.id}/{a.name}" for s in view.stages[-1:] for a in s.artifacts]
        show = f" ({', '.join(finals)})" if finals else ""
        done = f"done: show the human the results{show}; read them with workflow_artifact"
        if view.git is not None and not view.git.landed:
            into = view.git.target or "their branch"
            done += (
                f"; the work is on branch {view.git.branch}: if the human wants it on {into}, "
                f"call workflow_control(run_id='{rid}', action='land')"
            )
        return done
    if view.status == "failed":
        return (
            f"failed ({short(view.reason or 'see blockers', 120)}): tell the human; to run the "
            f"failed stages again call workflow_control(run_id='{rid}', action='retry')"
        )
    if view.status == "cancelled":
        return "cancelled: nothing more will run"
    running = [s.id for s in view.stages if s.status == "running"]
    doing = f"{', '.join(running)} running; " if running else ""
    return f"{doing}wait: call workflow_status(run_id='{rid}', wait_seconds=30)"


def run_brief(view: RunView) -> RunBrief:
    """The compact form of ``view``: a for_each stage carries its items, compactly."""
    gates = _gates(view)
    by_id = {s.id: s for s in view.stages}
    return RunBrief(
        run_id=view.run_id,
        template=view.template,
        task=short(view.task),
        status=view.status,
        runner=view.runner,
        spent_usd=round(view.spent_usd, 6),
        orchestration_usd=round(view.orchestration_usd, 6) or None,
        budget_usd=view.budget_usd,
        stages=[_stage_brief(s, by_id) for s in view.stages if s.parent is None],
        waiting=gates,
        blockers=[short(b) for b in view.blockers],
        reason=short(view.reason) if view.reason else None,
        forecast_p50_usd=view.forecast.p50_usd if view.forecast is not None else None,
        forecast_p90_usd=view.forecast.p90_usd if view.forecast is not None else None,
        adjustments=[short(a, 120) for a in view.adjustments],
        owner=view.owner,
        next_action=next_step(view, gates),
        seq=view.seq,
    )


# -- the catalog ----------------------------------------------------------------------------


class StageOutline(ReadModel):
    # fields that are false or empty are left out
    id: str
    agent: str | None = Field(None, description="absent for a command stage")
    after: list[str] = Field(default_factory=list, description="depends_on")
    approval: bool = Field(False, description="a human approves or rejects its result")
    gate: bool = Field(False, description="has a gate condition (when false a human decides)")
    each: str | None = Field(None, description="one sub-stage per item of this plan stage's plan")

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k == "id" or v}


class InputOutline(ReadModel):
    type: str
    required: bool = False
    default: Any = None


class TemplateBrief(ReadModel):
    name: str
    description: str = ""
    inputs: dict[str, InputOutline] = Field(default_factory=dict)
    stages: list[StageOutline] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list, description="why the file failed to load")


class AgentBrief(ReadModel):
    name: str
    model: str
    description: str = ""


class CatalogBrief(ReadModel):
    templates: list[TemplateBrief]
    agents: list[AgentBrief]
    errors: list[str] = Field(default_factory=list, description="files that failed to load")
    runner: str = Field(description="what executes agent stages")


def _template_brief(t: TemplateInfo) -> TemplateBrief:
    return TemplateBrief(
        name=t.name,
        description=short(t.description, DESCRIPTION_BRIEF),
        inputs={
            k: InputOutline(type=v.type, required=v.required, default=v.default)
            for k, v in t.inputs.items()
            if k != "task"  # every template takes the task (workflow_start's own argument)
        },
        stages=[
            StageOutline(
                id=s.id,
                agent=s.agent,
                after=s.depends_on,
                approval=s.approval,
                gate=s.gate is not None,
                each=s.for_each,
            )
            for s in t.stages
        ],
        problems=[short(p) for p in t.problems],
    )


def catalog_brief(result: TemplatesResult) -> CatalogBrief:
    """The compact form of the catalog."""
    return CatalogBrief(
        templates=[_template_brief(t) for t in result.templates],
        agents=[
            AgentBrief(name=a.name, model=a.model, description=short(a.description, AGENT_BRIEF))
            for a in result.agents
        ],
        errors=[short(e) for e in result.errors],
        runner=result.runner,
    )
