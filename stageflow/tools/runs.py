"""The tools that change runs: ``workflow_start``, ``workflow_approve``, ``workflow_control``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
    Resolve,
)
from mcp.types import CallToolResult
from pydantic import Field

from stageflow.engine.forecasts import CONFIRM_GATE, RunForecast
from stageflow.engine.state import RunState
from stageflow.engine.views import build_view
from stageflow.errors import InvalidState
from stageflow.prompts.templates import refresh_prompts
from stageflow.subagents.orchestrator.choose import AUTO, choose_template
from stageflow.tools.briefs import next_step
from stageflow.tools.confirm import ConfirmSpend, ask_the_human, human_confirmed
from stageflow.tools.deps import ToolContext, ToolDeps, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.forecast import dry_run_result, waits_for_confirmation
from stageflow.tools.human import (
    NO_CLIENT_SUPPORT,
    BudgetConsent,
    HumanDecision,
    LandConsent,
    ask_budget,
    ask_human,
    ask_land,
)
from stageflow.tools.models import CommandResult, ForecastBrief, StartResult
from stageflow.tools.results import run_uri, tool_result

if TYPE_CHECKING:
    from stageflow.engine.decisions import Via

DEFAULT_ACTOR = "mcp-client"

START_DESCRIPTION = """\
Start a workflow run from a template (see workflow_templates) for a task. Returns the run id
immediately; the stages (architect, developer, tester, reviewer ... subagents with fresh
contexts) run in the background and never block this call.

Next: poll workflow_status(run_id, wait_seconds=30) until it reports a waiting approval gate
or the end of the run. Extra template inputs go in `inputs` (e.g. {"severity": "high"});
budget_usd caps the run's model spend (defaults to the template's limit). dry_run=true only
forecasts the cost (p50/p90). A run forecast above the project's confirm_above_usd waits for
the human's confirmation (workflow_approve asks them). Unknown templates are reported with
the list of known names; missing required inputs with the reason."""

APPROVE_DESCRIPTION = """\
Approve, or reject with feedback, a stage that waits for a human decision: an approval gate
(approval=true) or a gate whose condition was false. Relay the human's decision; do not decide
on your own. `stage` may be omitted when exactly one stage is waiting. On a gate only a person
may decide (status: human_only) the server asks the user itself and their answer decides.

decision='approve' lets the run continue. decision='reject' needs `feedback` saying what must
change: for an approval gate the stage reruns (rework) with the feedback and its previous
artifacts, then waits again; for a blocked gate the stage fails. The approver is recorded in the
run's audit log. Approving a stage that is not waiting fails with an error naming its state.
A 'confirm' wait (the run's cost): reject cancels the run; on approve the server asks the
user."""

CONTROL_DESCRIPTION = """\
Control a run: 'cancel' stops it for good; 'pause' stops scheduling new stages; 'resume'
continues a paused run (`budget_usd`: a new cap if it stopped at its budget; spending more is
the user's call: the server asks them); 'retry' reruns a failed run's failed stages, or
`stage`. 'land' brings a completed run's git branch into the user's (a squash commit on the
branch it started from; or `strategy`, `into`) once the server asked them; refused with
what to do if that branch conflicts or is dirty. `reason` goes to the audit log. Returns the
run's and each stage's status."""

RunId = Annotated[str, Field(description="the run id returned by workflow_start")]


def _actor(given: str | None) -> str:
    return given.strip() if given and given.strip() else DEFAULT_ACTOR


def _command_result(
    state: RunState,
    action: str,
    stage: str | None,
    actor: str,
    *,
    said: str | None = None,
    said_only: bool = False,
    summary: str | None = None,
) -> CallToolResult:
    """The outcome of a command; ``said`` (with ``summary``) for one the user turned down:
    nothing was recorded, and the next action says so first (``said_only``: says only that)."""
    view = build_view(state)
    landed = state.git.landed[-1] if action == "land" and state.git.landed else None
    result = CommandResult(
        run_id=state.run_id,
        action=action,
        stage=stage,
        actor=actor,
        status=view.status,
        stages={s.id: s.status for s in view.stages},
        next_action=said if said and said_only else " ".join(filter(None, (said, next_step(view)))),
        commit=landed.commit if landed else None,
    )
    if summary is None:
        target = f" stage '{stage}'" if stage else ""
        if landed is not None:
            target = f" into {landed.into} as {(landed.commit or '-')[:12]}"
        summary = (
            f"{action}{target} of run {state.run_id} recorded (by {actor}); run is now "
            f"{view.status}. Follow with workflow_status(run_id='{state.run_id}', "
            "wait_seconds=30)."
        )
    return tool_result(result, summary)


async def workflow_start(
    ctx: ToolContext,
    template: Annotated[
        str,
        Field(description='template name, e.g. feature_development; "auto": chosen for the task'),
    ],
    task: Annotated[str, Field(description="what to build or fix, in plain words", min_length=1)],
    inputs: Annotated[
        dict[str, Any] | None,
        Field(description="extra template inputs by name (see workflow_templates)"),
    ] = None,
    budget_usd: Annotated[
        float | None, Field(description="USD cap for the whole run", ge=0)
    ] = None,
    dry_run: Annotated[bool, Field(description="only forecast the cost; start nothing")] = False,
) -> Annotated[CallToolResult, StartResult]:
    """Start a run; returns its id at once."""
    app = deps(ctx)
    await refresh_prompts(ctx, app.settings)  # the template may be new since the last listing
    chosen = None
    if template.strip() == AUTO:
        with tool_errors():  # choose first: a dry run forecasts the template chosen
            chosen = await choose_template(app.settings, app.service.template_descriptions(), task)
        template = str(chosen["template"])
    if dry_run:
        return await dry_run_result(app.service, template, task, inputs, app.runner_label)
    with tool_errors():
        state = await app.service.start_run(
            template,
            task,
            inputs=inputs,
            budget_usd=budget_usd,
            actor=DEFAULT_ACTOR,
            chosen=chosen,
        )
    app.start_driving(state.run_id)
    forecast = RunForecast.model_validate(state.forecast) if state.forecast else None
    if state.confirmation == "pending":
        return waits_for_confirmation(state, forecast, app.runner_label)
    result = StartResult(
        run_id=state.run_id,
        template=state.template,
        status=state.status,
        runner=app.runner_label,
        stages=[s.id for s in state.spec.stages],
        chosen=chosen,
        next_action=(
            f"poll workflow_status(run_id='{state.run_id}', wait_seconds=30) until a gate "
            "waits for approval or the run ends"
        ),
        forecast=ForecastBrief.of(forecast) if forecast is not None else None,
    )
    why = f" Chosen by {chosen['by']}: {chosen['reason']}" if chosen else ""
    summary = (
        f"Started run {state.run_id} ({state.template}: {' -> '.join(result.stages)}) with "
        f"runner {app.runner_label}.{why}\nNext: {result.next_action}. Dashboard: "
        f"{run_uri(state.run_id)}"
    )
    return tool_result(result, summary)


async def workflow_approve(
    ctx: ToolContext,
    run_id: RunId,
    decision: Annotated[
        Literal["approve", "reject"],
        Field(description="the human's decision: approve, or reject with feedback"),
    ],
    # filled by the server, never by the model: the person's own answer on a by-human gate
    human: Annotated[ElicitationResult[HumanDecision], Resolve(ask_human)],
    stage: Annotated[
        str | None, Field(description="the waiting stage; optional if only one waits")
    ] = None,
    feedback: Annotated[
        str | None, Field(description="required for reject: what must change")
    ] = None,
    approver: Annotated[
        str | None, Field(description="who decided (recorded in the audit log)")
    ] = None,
    attempt: Annotated[
        int | None, Field(description="the attempt reviewed (status: waiting[].attempt)")
    ] = None,
    # filled by the server, never by the model: the person's confirmation of a run's cost
    spend: Annotated[ElicitationResult[ConfirmSpend], Resolve(ask_the_human)] = None,  # type: ignore[assignment]
) -> Annotated[CallToolResult, CommandResult]:
    """Approve or reject a waiting gate."""
    app = deps(ctx)
    who = _actor(approver)
    via: Via = "tool"
    # the resolver's plain markers (NOT_ASKED, NO_CLIENT_SUPPORT) arrive as accepted data too
    asked: object = human.data if isinstance(human, AcceptedElicitation) else human
    with tool_errors():
        before = await app.service.state(run_id)
        if (
            before.confirmation == "pending"
            and decision == "approve"
            and stage in (None, CONFIRM_GATE)
        ):
            # the spend is the human's to confirm: they answered the server, not the model
            human_confirmed(before, spend, str(app.settings.project))
            who, via = f"{who}, confirmed by the human", "elicitation"
            stage = CONFIRM_GATE  # what the person's answer decides
        waiting = [
            sid
            for sid, st in before.stages.items()
            if st.status in ("awaiting_approval", "blocked")
        ]
        decided = stage or (waiting[0] if len(waiting) == 1 else None)
        if before.confirmation == "pending":  # the run's cost forecast, not a stage
            decided = CONFIRM_GATE
        if asked == NO_CLIENT_SUPPORT:
            raise InvalidState(_ask_the_user(run_id, decided, before))
        if isinstance(human, DeclinedElicitation | CancelledElicitation):
            return _not_decided(before, decided, human.action)
        if isinstance(asked, HumanDecision):  # the person's answer is the decision
            decision, feedback = asked.decision, asked.feedback.strip() or None
            who, via = asked.name.strip() or "user", "elicitation"
            # the stage and attempt the question showed, never a later choice of the engine's
            stage, attempt = asked.stage, asked.attempt or None
            decided = stage
        state = await app.service.decide(
            run_id,
            stage=stage,
            decision=decision,
            feedback=feedback,
            approver=who,
            attempt=attempt,
            via=via,
        )
    app.start_driving(run_id)
    return _command_result(state, decision, decided, who)


def _ask_the_user(run_id: str, stage: str | None, state: RunState) -> str:
    st = state.stages.get(stage or "")
    which = f" --stage {stage}" if stage and st else ""
    if st is not None and st.status == "awaiting_approval":  # a blocked gate takes no attempt
        which += f" --attempt {st.attempt}"
    return (
        f"stage '{stage}' needs a person's decision and this client cannot ask them "
        f"(no elicitation): ask the user to run `stageflow approve {run_id}{which}` (or "
        "`stageflow reject ... --feedback`) or to decide in the dashboard; the gate waits"
    )


def _not_decided(state: RunState, stage: str | None, action: str) -> CallToolResult:
    said = "declined to decide" if action == "decline" else "dismissed the question"
    return _command_result(
        state,
        "none",
        stage,
        "user",
        said=f"the user {said}; the gate still waits.",
        summary=f"not decided: the user {said}; stage {stage} still waits",
    )


async def workflow_control(
    ctx: ToolContext,
    run_id: RunId,
    action: Annotated[
        Literal["cancel", "pause", "resume", "retry", "land"], Field(description="what to do")
    ],
    # filled by the server: the person's consent before a resume lets the run spend more
    consent: Annotated[ElicitationResult[BudgetConsent], Resolve(ask_budget)],
    # filled by the server: the person's consent before a land changes their branch
    land_consent: Annotated[ElicitationResult[LandConsent], Resolve(ask_land)],
    stage: Annotated[str | None, Field(description="for retry: the stage to rerun")] = None,
    reason: Annotated[str | None, Field(description="why (recorded in the audit log)")] = None,
    budget_usd: Annotated[
        float | None, Field(description="for resume: a new USD cap for the run", ge=0)
    ] = None,
    strategy: Annotated[
        Literal["squash", "merge", "rebase"], Field(description="for land")
    ] = "squash",
    into: Annotated[
        str | None, Field(description="for land: the target branch (default: the run's)")
    ] = None,
) -> Annotated[CallToolResult, CommandResult]:
    """Cancel, pause, resume, retry or land a run."""
    app = deps(ctx)
    who = DEFAULT_ACTOR
    via: Via = "tool"
    asked: object = consent.data if isinstance(consent, AcceptedElicitation) else consent
    with tool_errors():
        if action == "land":
            return await _land(app, run_id, land_consent, strategy, into)
        if asked == NO_CLIENT_SUPPORT:
            raise InvalidState(
                f"letting run {run_id} spend more is the user's decision and this client "
                f"cannot ask them: ask them to run `stageflow resume {run_id} --budget <USD>`"
            )
        if isinstance(consent, DeclinedElicitation | CancelledElicitation) or (
            isinstance(asked, BudgetConsent) and not asked.resume
        ):
            before = await app.service.state(run_id)
            return _not_resumed(before)
        if isinstance(asked, BudgetConsent):  # the person's answer sets the cap
            budget_usd = asked.budget_usd or None
            who, via = asked.name.strip() or "user", "elicitation"
        state = await app.service.control(
            run_id, action, stage=stage, reason=reason, budget_usd=budget_usd, actor=who, via=via
        )
    app.start_driving(run_id)
    return _command_result(state, action, stage, who)


async def _land(
    app: ToolDeps,
    run_id: str,
    consent: ElicitationResult[LandConsent] | str,
    strategy: Literal["squash", "merge", "rebase"],
    into: str | None,
) -> CallToolResult:
    """Land only on the person's answer; without one the engine refuses (a model's land),
    after naming whatever else is wrong."""
    asked: object = consent.data if isinstance(consent, AcceptedElicitation) else consent
    if asked == NO_CLIENT_SUPPORT:
        raise InvalidState(
            f"landing run {run_id} changes the user's branch and this client cannot ask them: "
            f"ask them to run `stageflow land {run_id}`"
        )
    if isinstance(consent, DeclinedElicitation | CancelledElicitation) or (
        isinstance(asked, LandConsent) and not asked.land
    ):
        state = await app.service.state(run_id)
        return _command_result(
            state,
            "none",
            None,
            "user",
            said="the user did not land the run; their branch is unchanged",
            said_only=True,
            summary=f"not landed: the user said no; run {run_id}'s work stays on its branch",
        )
    who: str = DEFAULT_ACTOR
    via: Via = "tool"
    if isinstance(asked, LandConsent):
        who, via = asked.name.strip() or "user", "elicitation"
    state = await app.service.land(run_id, strategy=strategy, into=into, actor=who, via=via)
    return _command_result(state, "land", None, who)


def _not_resumed(state: RunState) -> CallToolResult:
    return _command_result(
        state,
        "none",
        None,
        "user",
        said="the user did not let the run spend more; it stays paused",
        said_only=True,
        summary=f"not resumed: the user said no; run {state.run_id} stays paused",
    )
