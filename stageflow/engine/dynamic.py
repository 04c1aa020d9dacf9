"""The fold of the events that change a run's DAG while it runs. Pure: no I/O, no clock.

- ``plan_expanded``: a for_each stage gets one sub-stage per item (``execute.t1``), whose spec
  is derived from the parent's spec and the item (``workflows.derived.item_stage``);
- ``rework_requested``: the target (or some of its items) reruns with feedback, and every
  stage downstream of it, up to the requester, runs again after it (``rerun``);
- ``stage_escalated`` / ``escalation_decided``: a false gate or used-up rework rounds go to a
  decision agent (a derived stage, ``audit.decision1``) or to a human, and come back decided;
- ``run_adjusted``: stages added or skipped, concurrency raised, a blocked stage escalated.

Every spec a new stage runs with is a function of the log, so replay, resume, leases, audit
and status all see the same stages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.asking import answer_key
from stageflow.engine.records import (
    Escalation,
    RunState,
    StageState,
    StageStatus,
    fail_stage,
    inserted,
    put,
)
from stageflow.workflows.derived import decision_stage, feedback_findings, item_stage
from stageflow.workflows.plan import PlanItem
from stageflow.workflows.spec import StageSpec


def downstream(state: RunState, target: str) -> list[str]:
    """Stages that (transitively) depend on ``target``, in run order; the items of a for_each
    stage among them count as downstream too (they work from its inputs)."""
    found: set[str] = {target}
    changed = True
    while changed:
        changed = False
        for sid in state.stages:
            if sid in found:
                continue
            parent = state.parent_of.get(sid)
            deps = state.stage_spec(sid).depends_on
            if any(d in found for d in deps) or (parent in found and parent != target):
                found.add(sid)
                changed = True
    found.discard(target)
    return [sid for sid in state.stages if sid in found]


def expanded(state: RunState, e: ev.PlanExpanded) -> RunState:
    parent = state.stage_spec(e.stage)
    items = [PlanItem.model_validate(i) for i in e.items]
    specs = {f"{parent.id}.{i.id}": item_stage(parent, i) for i in items}
    fresh = [StageState(id=sid) for sid in specs]
    stages = inserted(state.stages, fresh, after=e.stage)
    stages[e.stage] = replace(stages[e.stage], status="expanded", reason=None)
    return replace(
        state,
        stages=stages,
        overrides={**state.overrides, **specs},
        children={**state.children, e.stage: tuple(specs)},
        parent_of={**state.parent_of, **dict.fromkeys(specs, e.stage)},
    )


def reworked(state: RunState, e: ev.ReworkRequested) -> RunState:
    stages = dict(state.stages)
    why = f"rerun: '{e.stage}' sent '{e.target}' back (round {e.round})"
    for sid in downstream(state, e.target):
        st = stages[sid]
        if sid in state.spec.rollback_targets() or (st.status == "pending" and not st.attempts):
            continue
        if sid in state.children:  # its items rerun; it follows them (it is never re-expanded)
            continue
        stages[sid] = replace(
            st,
            status="pending",
            rerun=True,
            reason=why,
            feedback=None,
            escalation=None,
            gate_overridden=False,
        )
    for sid, text in e.feedback.items():
        stages[sid] = replace(
            stages[sid],
            status="pending",
            rerun=False,
            feedback=text,
            feedback_from=e.stage,
            reason=f"rework requested by '{e.stage}' (round {e.round})",
        )
    requester = stages[e.stage]
    stages[e.stage] = replace(requester, rounds=e.round, note=None)
    return replace(state, stages=stages)


def rejected(st: StageState, feedback: str, approver: str) -> StageState:
    """A human rejected the result of a stage with ``on_changes_requested``: like a reviewer's
    changes_requested, the work goes back to its rework stage with the feedback as findings
    (lines starting ``t2:`` name an item)."""
    return replace(
        st,
        status="changes_requested",
        approval_expires_at=None,
        outputs={**st.outputs, "findings": feedback_findings(feedback)},
        summary=f"rejected by {approver}",
    )


def _open(
    state: RunState, stage: str, esc: Escalation, agent_def: AgentDefinition | None
) -> RunState:
    st = state.stages[stage]
    if esc.to == "human":
        blocked = replace(
            st,
            status="blocked",
            escalation=esc,
            reason=f"a human decides: {esc.reason}",
            shown=st.shown + 1,  # put to a human: a decision binds to this version
        )
        return put(state, blocked)
    agents = state.agents if agent_def is None else {**state.agents, esc.to: agent_def}
    round_ = st.escalations + 1
    spec = decision_stage(
        state.stage_spec(stage),
        agent=esc.to,
        round_=round_,
        kind="gate" if esc.kind == "gate" else "rework",  # failure: only to a human
        reason=esc.reason,
        open_findings=esc.findings,
    )
    esc = replace(esc, decider=spec.id)
    waiting = replace(
        st,
        status="escalated",
        escalation=esc,
        escalations=round_,
        reason=f"{esc.to} decides: {esc.reason}",
    )
    stages = inserted(state.stages, [StageState(id=spec.id)], after=stage)
    stages[stage] = waiting
    return replace(
        state, stages=stages, agents=agents, overrides={**state.overrides, spec.id: spec}
    )


def escalated(state: RunState, e: ev.StageEscalated) -> RunState:
    esc = Escalation(kind=e.kind, to=e.to, reason=e.reason, findings=e.findings, by=e.by)
    return _open(state, e.stage, esc, None)


def decided(state: RunState, e: ev.EscalationDecided) -> RunState:
    st = state.stages[e.stage]
    esc = st.escalation
    if esc is None:
        return state
    decision = e.decision
    if e.by_agent and esc.to == "human":
        decision = "human"  # a model never decides what was escalated to a human
    said = f"{e.approver}: {e.feedback}" if e.feedback else e.approver
    if decision == "human":
        reason = f"{esc.reason}; handed to a human by {said}"
        return put(
            state,
            replace(
                st,
                status="blocked",
                escalation=replace(esc, to="human", decider=None, reason=reason),
                reason=f"a human decides: {reason}",
                shown=st.shown + (esc.to != "human"),  # newly put to a human
            ),
        )
    if esc.kind == "failure":
        return _failure_decided(state, st, decision, said)
    if esc.kind == "gate":
        if decision == "approve":
            return put(
                state,
                replace(st, status="pending", gate_overridden=True, escalation=None, reason=None),
            )
        return fail_stage(state, st, f"gate rejected by {said}")
    if decision == "approve":
        # a human accepting the result has also approved it; a decision agent has not
        spec = state.stage_spec(e.stage)
        approval = spec.approval is not None and spec.approval.required and e.by_agent
        status: StageStatus = "awaiting_approval" if approval else "succeeded"
        shown = st.shown + 1 if approval else st.shown
        return put(
            state,
            replace(st, status=status, escalation=None, reason=None, shown=shown, approvals=()),
        )
    # reject: one more rework round, with the decider's feedback on top of the findings
    return put(
        state,
        replace(
            st,
            status="changes_requested",
            escalation=None,
            granted=st.granted + 1,
            note=f"{e.approver} asks for another round: {e.feedback or 'see the findings'}",
            reason=None,
        ),
    )


def _failure_decided(state: RunState, st: StageState, decision: str, said: str) -> RunState:
    """A person decided a failed attempt the orchestrator handed over: approve runs the stage
    again (the failure still counts toward ``max_attempts``); reject applies ``on_failure``
    as if no retry were left (fail, continue or rollback)."""
    if decision == "approve":
        return put(state, replace(st, status="pending", escalation=None, reason=None))
    return put(
        state,
        replace(
            st,
            status="attempt_failed",
            escalation=None,
            fatal=True,
            transient=False,
            reason=f"{st.reason or 'failed'}; a retry was declined by {said}",
        ),
    )


def answered(state: RunState, e: ev.OrchestrationAsked | ev.OrchestrationDecided) -> RunState:
    """A request's reservation counts as the run's spend (its cap sees it) from before it is
    sent; the answer, kept for the planner, replaces it by what it cost; both are the
    orchestration share of the spend."""
    if isinstance(e, ev.OrchestrationAsked):
        spent, answers = e.reserved_usd, state.answers
    else:
        spent = e.cost_usd - e.reserved_usd
        answers = {**state.answers, answer_key(e.question, e.stage, e.attempt, e.round): e}
    stages = state.stages
    st = stages.get(e.stage)
    if st is not None:  # the stage's cap counts the questions about it (metering)
        stages = {**stages, e.stage: replace(st, asked_usd=round(st.asked_usd + spent, 10))}
    return replace(
        state,
        stages=stages,
        answers=answers,
        spent=state.spent + spent,
        orchestration=round(state.orchestration + spent, 10),
    )


def _agent(e: ev.RunAdjusted) -> AgentDefinition | None:
    return AgentDefinition.model_validate(e.agent_def) if e.agent_def is not None else None


def adjusted(state: RunState, e: ev.RunAdjusted) -> RunState:
    line = _describe(e)
    state = replace(state, adjustments=(*state.adjustments, line))
    if e.action == "set_concurrency" and e.max_concurrent_agents is not None:
        return replace(state, concurrency=e.max_concurrent_agents)
    if e.stage is None:
        return state
    if e.action == "skip_stage":
        st = state.stages[e.stage]
        why = f"skipped by {e.by}" + (f": {e.reason}" if e.reason else "")
        return put(state, replace(st, status="skipped", reason=why))
    if e.action == "escalate" and e.to is not None:
        st = state.stages[e.stage]
        esc = Escalation(kind="gate", to=e.to, reason=st.reason or "blocked", by=e.by)
        return _open(state, e.stage, esc, _agent(e))
    if e.action == "add_stage" and e.spec is not None:
        return _added(state, StageSpec.model_validate(e.spec), e.before, _agent(e))
    return state


def _added(
    state: RunState, spec: StageSpec, before: Iterable[str], agent_def: AgentDefinition | None
) -> RunState:
    overrides = {**state.overrides, spec.id: spec}
    first: str | None = None
    for sid in before:
        current = state.stage_spec(sid)
        overrides[sid] = current.model_copy(update={"depends_on": [*current.depends_on, spec.id]})
        first = first or sid
    new = StageState(id=spec.id)
    stages: dict[str, StageState] = {}
    for sid, st in state.stages.items():
        if sid == first:  # listed before the first stage that waits for it
            stages[spec.id] = new
        stages[sid] = st
    stages.setdefault(spec.id, new)
    agents = state.agents if agent_def is None else {**state.agents, agent_def.name: agent_def}
    return replace(state, stages=stages, overrides=overrides, agents=agents)


def _describe(e: ev.RunAdjusted) -> str:
    why = f" ({e.reason})" if e.reason else ""
    if e.action == "add_stage" and e.spec is not None:
        deps = ", ".join(e.spec.get("depends_on") or []) or "nothing"
        before = f", before {', '.join(e.before)}" if e.before else ""
        return f"{e.by} added stage '{e.stage}' ({e.spec.get('agent')}) after {deps}{before}{why}"
    if e.action == "skip_stage":
        return f"{e.by} skipped stage '{e.stage}'{why}"
    if e.action == "set_concurrency":
        return f"{e.by} set max_concurrent_agents to {e.max_concurrent_agents}{why}"
    return f"{e.by} escalated stage '{e.stage}' to {e.to}{why}"
