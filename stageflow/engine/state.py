"""The run state and the pure fold ``apply(state, envelope) -> state``.

No I/O, no awaits, no clock: everything time-dependent uses the envelope's ``at``. ``apply``
returns a new ``RunState``; unchanged stages are shared between the old and the new state, so a
fold over a long log stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine import dynamic
from stageflow.engine.gitstate import fold_git, grow_spec
from stageflow.engine.lanes import plan_lanes
from stageflow.engine.records import (
    DONE_STAGE,
    HUMAN_WAIT,
    TERMINAL_RUN,
    AttemptInfo,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
    fail_stage,
    put,
    settle_parents,
)
from stageflow.workflows.spec import WorkflowSpec

__all__ = [
    "DONE_STAGE",
    "HUMAN_WAIT",
    "TERMINAL_RUN",
    "AttemptInfo",
    "RunState",
    "RunStatus",
    "StageState",
    "StageStatus",
    "apply",
    "fold",
    "initial_state",
    "preview",
]


def initial_state(run_id: str, env: ev.Envelope) -> RunState:
    """The state right after ``RunCreated``."""
    created = env.event
    if not isinstance(created, ev.RunCreated):
        raise ValueError(f"run {run_id}: the first event must be run_created, got {created.type}")
    spec = WorkflowSpec.model_validate(created.spec)
    agents = {n: AgentDefinition.model_validate(a) for n, a in created.agents.items()}
    return RunState(
        run_id=run_id,
        template=created.template,
        task=created.task,
        spec=spec,
        agents=agents,
        inputs=dict(created.inputs),
        stages={s.id: StageState(id=s.id) for s in spec.stages},
        created_at=env.at,
        updated_at=env.at,
        runner=created.runner,
        workdir=created.workdir,
        budget_usd=created.budget_usd,
        chosen=dict(created.chosen) if created.chosen else None,
        orchestration=float((created.chosen or {}).get("cost_usd") or 0.0),
        seq=env.seq,
        head_hash=env.hash,
        forecast=dict(created.forecast) if created.forecast is not None else None,
        confirmation="pending" if created.confirm_above_usd is not None else None,
        confirm_above_usd=created.confirm_above_usd,
        started_at=env.at,
        lanes=plan_lanes(spec, agents),
    )


def fold(envelopes: list[ev.Envelope]) -> RunState:
    """Replay a whole log."""
    if not envelopes:
        raise ValueError("cannot fold an empty event log")
    state = initial_state(envelopes[0].run_id, envelopes[0])
    for env in envelopes[1:]:
        state = apply(state, env)
    return state


_set = put
_fail = fail_stage


def apply(state: RunState, env: ev.Envelope) -> RunState:
    """Apply one logged event; pure (returns a new state). A for_each stage's status follows
    its items: it is settled after every event that changed one of them."""
    after = _apply(replace(state, seq=env.seq, head_hash=env.hash, updated_at=env.at), env)
    return settle_parents(state, after)


def _apply(state: RunState, env: ev.Envelope) -> RunState:
    e = env.event
    match e:
        case ev.AttemptStarted():
            st = state.stages[e.stage]
            agents = state.agents
            if e.agent and e.agent_def is not None:  # a newer definition than the run had
                agents = {**agents, e.agent: AgentDefinition.model_validate(e.agent_def)}
            info = AttemptInfo(
                number=e.attempt,
                kind=e.kind,
                started_at=env.at,
                agent=e.agent,
                agent_hash=e.agent_hash,
                model_requested=e.model,
                context=dict(e.context),
                choice=dict(e.choice) if e.choice is not None else None,
            )
            return _set(
                state,
                replace(
                    st,
                    status="running",
                    attempts=(*st.attempts, info),
                    not_before=None,
                    reason=None,
                    approval_expires_at=None,
                    rerun=False,
                    debate=() if e.kind == "rework" else st.debate,
                ),
                agents=agents,
            )
        case ev.DebateTurn() | ev.DebateVerdict():
            st = state.stages[e.stage]
            cost = e.cost_usd if isinstance(e, ev.DebateVerdict) else 0.0
            return _set(
                state,
                replace(st, debate=(*st.debate, e)),
                orchestration=round(state.orchestration + cost, 10),
            )
        case ev.AttemptFinished():
            return _attempt_finished(state, env, e)
        case ev.ApprovalDecided():
            st = state.stages[e.stage]
            if e.decision == "approve":
                approval = state.stage_spec(e.stage).approval
                needed = approval.min_approvals if approval is not None else 1
                approvals = (*st.approvals, e.approver)
                if not e.automatic and len(set(approvals)) < needed:
                    return _set(state, replace(st, approvals=approvals))  # still waiting
                return _set(
                    state,
                    replace(st, status="succeeded", approval_expires_at=None, approvals=approvals),
                )
            if state.stage_spec(e.stage).on_changes_requested is not None:
                return _set(state, dynamic.rejected(st, e.feedback or "", e.approver))
            limit = state.stage_spec(e.stage).max_rework
            if st.reworks >= limit:
                why = f"rejected by {e.approver} after {st.reworks} rework(s) (max_rework {limit})"
                return _fail(state, replace(st, approval_expires_at=None), why)
            return _set(
                state,
                replace(
                    st,
                    status="pending",
                    reworks=st.reworks + 1,
                    feedback=e.feedback or "",
                    approval_expires_at=None,
                ),
            )
        case ev.ConfirmationDecided():
            if state.confirmation != "pending":
                return state  # decided already (a second decision changes nothing)
            if e.decision == "approve":
                return replace(state, confirmation="confirmed", started_at=env.at)
            why = f"cost forecast declined by {e.approver}" + (
                f": {e.feedback}" if e.feedback else ""
            )
            return replace(state, ended="cancelled", end_reason=why)
        case ev.GateBlocked():
            st = state.stages[e.stage]
            return _set(state, replace(st, status="blocked", reason=f"gate false: {e.condition}"))
        case ev.GateDecided():
            st = state.stages[e.stage]
            if e.decision == "approve":
                return _set(state, replace(st, status="pending", gate_overridden=True, reason=None))
            reason = f"gate rejected by {e.approver}" + (f": {e.feedback}" if e.feedback else "")
            return _fail(state, st, reason)
        case ev.StageSkipped():
            st = state.stages[e.stage]
            return _set(state, replace(st, status="skipped", reason=e.reason))
        case ev.RetryScheduled():
            st = state.stages[e.stage]
            return _set(state, replace(st, status="retry_wait", not_before=e.not_before))
        case ev.StageFailed():
            st = state.stages[e.stage]
            failed = replace(st, status="failed", reason=e.reason, tolerated=e.tolerated)
            if e.tolerated or state.failing is not None:
                return _set(state, failed)
            return _set(state, failed, failing=e.stage)
        case ev.RollbackStarted():
            st = state.stages[e.rollback_stage]
            return _set(
                state, replace(st, status="pending", triggered=True), rollback=e.rollback_stage
            )
        case ev.StageRetryRequested():
            return _retry_requested(state, e)
        case ev.RunPaused():
            return replace(
                state,
                paused=True,
                pause_reason=e.reason,
                budget_paused=state.budget_paused or e.budget_exceeded,
            )
        case ev.RunResumed():
            return _resumed(state, e)
        case ev.RunCancelled():
            return replace(state, ended="cancelled", end_reason=e.reason or "cancelled")
        case ev.RunCompleted():
            return replace(state, ended="completed", end_reason=None)
        case ev.RunFailed():
            return replace(state, ended="failed", end_reason=e.reason)
        case ev.LeaseTaken():
            return replace(state, owner=e.owner)
        case ev.GitStarted() | ev.GitFinished():
            return _git_event(state, env, e)
        case ev.PlanExpanded():
            return dynamic.expanded(state, e)
        case ev.ReworkRequested():
            return dynamic.reworked(state, e)
        case ev.StageEscalated():
            return dynamic.escalated(state, e)
        case ev.EscalationDecided():
            return dynamic.decided(state, e)
        case ev.RunAdjusted():
            return dynamic.adjusted(state, e)
        case ev.OrchestrationAsked() | ev.OrchestrationDecided():
            return dynamic.answered(state, e)
        case ev.RunCreated():
            raise ValueError(f"run {state.run_id}: run_created may only be the first event")
    return state


def _git_event(state: RunState, env: ev.Envelope, e: ev.GitStarted | ev.GitFinished) -> RunState:
    git, fx = fold_git(state.git, env, e)
    state = replace(state, git=git)
    if fx.new_stage is not None:  # a merge stage for a conflict (or its conflict again)
        sid = fx.new_stage.id
        known = state.stages.get(sid)
        spec = state.spec if known is not None else grow_spec(state.spec, fx.new_stage)
        base = known or StageState(id=sid)
        arts = {**base.artifacts, **{r.name: r for r in fx.artifacts}}
        fresh = replace(base, status="pending", artifacts=arts, reason=None, failures=0)
        state = replace(state, spec=spec, stages={**state.stages, sid: fresh})
    if fx.stage_update is not None and fx.stage_update[0] in state.stages:
        sid, status, reason = fx.stage_update
        st = state.stages[sid]
        failures = st.failures + 1 if status == "attempt_failed" else st.failures
        failures = 0 if status == "succeeded" else failures
        state = _set(
            state,
            replace(st, status=status, reason=reason, gate_overridden=False, failures=failures),
        )
    if fx.pause is not None:
        state = replace(state, paused=True, pause_reason=fx.pause)
    return state


def _attempt_finished(state: RunState, env: ev.Envelope, e: ev.AttemptFinished) -> RunState:
    st = state.stages[e.stage]
    attempts = list(st.attempts)
    if attempts and attempts[-1].number == e.attempt:
        attempts[-1] = replace(
            attempts[-1],
            finished_at=env.at,
            outcome=e.outcome,
            summary=e.summary,
            error=e.error,
            usage=e.usage,
            model_resolved=e.model_requested,
            model_answered=e.model,
            runner=e.runner,
            context={**attempts[-1].context, **({"input": e.context} if e.context else {})},
        )
    usage = st.usage + e.usage
    artifacts = dict(st.artifacts)
    for ref in e.artifacts:
        artifacts[ref.name] = ref
    base = replace(st, attempts=tuple(attempts), usage=usage, artifacts=artifacts)
    if e.usage.cost_usd:
        state = replace(state, spent=state.spent + e.usage.cost_usd)
    spec = state.stage_spec(e.stage)
    if e.outcome in ("passed", "changes_requested"):
        outputs = {**e.outputs, "verdict": e.outcome}
        done = replace(
            base,
            outputs=outputs,
            summary=e.summary,
            feedback=None,
            feedback_from=None,
            # a merge stage's pass counts once its resolution is adopted (markers left fail it)
            failures=base.failures if e.stage in state.git.merge_stages else 0,
            plan=tuple(e.plan) if e.plan is not None else base.plan,
        )
        if e.outcome == "changes_requested" and spec.on_changes_requested is not None:
            # the planner sends the work back (or escalates) in the same transaction
            return _set(state, replace(done, status="changes_requested"))
        if spec.approval is not None and spec.approval.required:
            expires = env.at + spec.approval.timeout if spec.approval.timeout else None
            return _set(
                state,
                replace(
                    done,
                    status="awaiting_approval",
                    approval_expires_at=expires,
                    shown=st.shown + 1,
                    approvals=(),
                ),
            )
        return _set(state, replace(done, status="succeeded"))
    if e.outcome == "interrupted":
        # the process died mid-attempt: run it again, not counted as a failure
        return _set(state, replace(base, status="pending", reason="interrupted; will resume"))
    if e.outcome == "cancelled":
        if state.ended is not None or state.failing is not None:
            return _set(state, replace(base, status="cancelled", reason=e.error or "cancelled"))
        return _set(state, replace(base, status="pending", reason=e.error))
    # failed, timed_out, budget_exceeded
    return _set(
        state,
        replace(
            base,
            status="attempt_failed",
            failures=st.failures + 1,
            reason=e.error or e.summary or e.outcome,
            budget_failed=e.outcome == "budget_exceeded",
            fatal=e.fatal,
            transient=e.outcome == "failed" and e.retryable and not e.fatal,
            outputs=dict(e.outputs),
        ),
    )


def _retry_requested(state: RunState, e: ev.StageRetryRequested) -> RunState:
    stages = dict(state.stages)
    # a for_each stage is retried through its items that did not succeed
    items = state.children.get(e.stage)
    targets = [i for i in items if stages[i].status != "succeeded"] if items else [e.stage]
    for sid in targets:
        stages[sid] = replace(
            stages[sid],
            status="pending",
            failures=0,
            not_before=None,
            reason=None,
            tolerated=False,
            budget_failed=False,
        )
    # downstream stages that were cancelled or skipped because of the failure get another chance
    for sid, other in state.stages.items():
        if other.status == "cancelled":
            stages[sid] = replace(other, status="pending", reason=None)
    failing = None if state.failing in (e.stage, *targets) else state.failing
    ended = state.ended if state.ended == "completed" else None
    return replace(
        state,
        stages=stages,
        failing=failing,
        ended=ended,
        end_reason=None,
        rollback=None if failing is None else state.rollback,
    )


def _resumed(state: RunState, e: ev.RunResumed) -> RunState:
    stages = dict(state.stages)
    for sid, st in state.stages.items():
        if st.transient and st.status == "attempt_failed":  # paused while the API was down
            stages[sid] = replace(st, status="pending", transient=False, failures=0, reason=None)
    if state.budget_paused:
        for sid, st in state.stages.items():
            if st.budget_failed and st.status in ("failed", "attempt_failed"):
                stages[sid] = replace(
                    st,
                    status="pending",
                    budget_failed=False,
                    failures=0,
                    reason=None,
                    budget_base=st.usage.cost_usd + st.asked_usd,
                )
    failing = state.failing
    if failing is not None and state.stages[failing].budget_failed:
        failing = None
    budget = e.budget_usd if e.budget_usd is not None else state.budget_usd
    return replace(
        state,
        stages=stages,
        paused=False,
        pause_reason=None,
        budget_paused=False,
        budget_usd=budget,
        failing=failing,
    )


def preview(state: RunState, events: Sequence[ev.Event], *, at: float | None = None) -> RunState:
    """The state after ``events`` at time ``at`` without sealing them: what the log will say
    once they are appended (only ``seq``/``head_hash`` differ until then)."""
    when = state.updated_at if at is None else at
    for e in events:
        env = ev.Envelope.model_construct(
            run_id=state.run_id,
            seq=state.seq + 1,
            at=when,
            actor="",
            event=e,
            prev_hash="",
            hash="",
        )
        state = apply(state, env)
    return state
