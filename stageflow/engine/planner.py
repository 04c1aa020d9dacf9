"""``next_actions(state, now)``: what should happen next in a run. Pure: no I/O, no awaits.

The planner returns *decisions* (events to append: skips, gate blocks, retries, failures,
completion) and *starts* (attempts the scheduler should launch), plus the earliest time at which
the plan may change by itself (a retry backoff or approval deadline), so the scheduler knows when
to look again. Calling it repeatedly on the same state gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from stageflow import events as ev
from stageflow.engine import asking, loops
from stageflow.engine.gitplan import commit_first, final_merge, git_decisions, start_gate
from stageflow.engine.plans import expansion
from stageflow.engine.state import DONE_STAGE, RunState, StageState
from stageflow.workflows.conditions import ConditionError, parse_condition
from stageflow.workflows.plan import files_overlap
from stageflow.workflows.spec import StageSpec

AttemptKind = Literal["initial", "retry", "rework", "resume", "rerun"]


@dataclass(frozen=True)
class StartAttempt:
    """Launch attempt ``attempt`` of ``stage``."""

    stage: str
    attempt: int
    kind: AttemptKind
    feedback: str | None = None


@dataclass(frozen=True)
class Plan:
    decisions: list[ev.Event] = field(default_factory=list)
    starts: list[StartAttempt] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)  # running stages to cancel
    wake_at: float | None = None
    # questions for the orchestrator (``engine.asking``): their stages wait for the answers
    questions: list[asking.Ask] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.decisions or self.starts or self.cancel)


_DUE = frozenset(
    {
        "attempt_failed",
        "awaiting_approval",
        "retry_wait",
        "changes_requested",
        "escalated",
        "blocked",
    }
)
_OPEN = frozenset({"pending", "retry_wait"})


def condition_context(state: RunState, spec: StageSpec | None = None) -> dict[str, Any]:
    """What ``when``/``gate`` expressions see: inputs and every stage's status and outputs,
    and for ``spec``'s own condition ``all_passed``/``any_approved``/``passed`` over its
    upstream (``stageflow.workflows.conditions``)."""
    ctx: dict[str, Any] = {"inputs": {"task": state.task, **state.inputs}}
    for sid, st in state.stages.items():
        ctx[sid] = {"status": st.status, "outputs": st.outputs}
    if spec is not None:
        upstream = [(state.stage_spec(d), state.stages[d]) for d in spec.depends_on]
        passed = [
            (s, st)
            for s, st in upstream
            if st.status == "succeeded" and st.outputs.get("verdict") != "changes_requested"
        ]
        ctx["passed"] = len(passed)
        ctx["all_passed"] = bool(upstream) and len(passed) == len(upstream)
        ctx["any_approved"] = any(s.approval is not None and s.approval.required for s, _ in passed)
    return ctx


def _eval(text: str, state: RunState, spec: StageSpec | None = None) -> bool:
    try:
        return parse_condition(text).evaluate(condition_context(state, spec))
    except ConditionError:
        return False  # templates are validated before a run starts; a bad snapshot fails closed


def waits_for(state: RunState, spec: StageSpec) -> list[str]:
    """What a stage waits for: its depends_on, and for a plan item also its for_each stage's
    (which a rework upstream of it sends back to pending)."""
    parent = state.parent_of.get(spec.id)
    if parent is None:
        return spec.depends_on
    return [*state.stage_spec(parent).depends_on, *spec.depends_on]


def _deps_state(deps: list[str], state: RunState) -> Literal["wait", "ready", "skip", "never"]:
    if not deps:
        return "ready"
    statuses = [state.stages[d] for d in deps]
    if any(s.status not in DONE_STAGE for s in statuses):
        return "wait"
    if any(s.status == "cancelled" or (s.status == "failed" and not s.tolerated) for s in statuses):
        return "never"
    if all(s.status == "skipped" for s in statuses):
        return "skip"
    return "ready"


TRANSIENT_ATTEMPTS = 4  # attempts of a stage whose provider keeps failing, before a pause
TRANSIENT_BACKOFF = 2.0  # seconds before the first retry; doubles, capped below
TRANSIENT_MAX_BACKOFF = 60.0


def _failure_decision(
    spec: StageSpec,
    st: StageState,
    state: RunState,
    now: float,
    ask: frozenset[str] = frozenset(),
) -> list[ev.Event] | asking.Ask:
    policy = spec.on_failure
    reason = st.reason or "failed"
    if st.budget_failed:
        if state.budget_paused:
            return []
        return [
            ev.RunPaused(reason=f"stage '{st.id}': {reason}", by="engine", budget_exceeded=True)
        ]
    if st.transient and not st.triggered:
        # the provider failed (network, overload, 5xx after the SDK's own retries): that says
        # nothing about the stage, so retry whatever the policy; if the API stays down, pause
        # the run (nothing is lost) instead of failing it; resume continues when it is back
        limit = policy.max_attempts if policy.action == "retry" else TRANSIENT_ATTEMPTS
        if st.failures < limit and state.failing is None:
            delay = min(TRANSIENT_BACKOFF * 2 ** (st.failures - 1), TRANSIENT_MAX_BACKOFF)
            if policy.action == "retry":
                delay = policy.backoff_for(st.failures)
            retry = ev.RetryScheduled(
                stage=st.id,
                attempt=st.attempt + 1,
                not_before=now + delay,
                reason=f"attempt {st.attempt} failed: {reason}",
            )
            return asking.triaged(state, st, retry, attempts_left=limit - st.failures, ask=ask)
        if not state.paused:
            return [
                ev.RunPaused(
                    reason=f"stage '{st.id}': the model provider kept failing ({reason}); "
                    "resume the run when it is reachable again",
                    by="engine",
                )
            ]
        return []
    final = policy.action
    if policy.action == "retry":
        if st.failures < policy.max_attempts and state.failing is None and not st.fatal:
            delay = policy.backoff_for(st.failures)
            retry = ev.RetryScheduled(
                stage=st.id,
                attempt=st.attempt + 1,
                not_before=now + delay,
                reason=f"attempt {st.attempt} failed: {reason}",
            )
            left = policy.max_attempts - st.failures
            return asking.triaged(state, st, retry, attempts_left=left, ask=ask)
        final = policy.then
        reason = f"{reason} (after {st.failures} attempts)"
    if st.triggered:  # a rollback stage failing ends the run; no rollback of the rollback
        return [ev.StageFailed(stage=st.id, reason=reason)]
    if final == "continue":
        return [ev.StageFailed(stage=st.id, reason=reason, tolerated=True)]
    if final == "rollback" and policy.rollback and state.failing is None:
        return [
            ev.StageFailed(stage=st.id, reason=reason),
            ev.RollbackStarted(failed_stage=st.id, rollback_stage=policy.rollback),
        ]
    return [ev.StageFailed(stage=st.id, reason=reason)]


def next_actions(state: RunState, now: float, *, ask: frozenset[str] = frozenset()) -> Plan:
    """Decide what happens next. Deterministic for a given (state, now). ``ask``: the
    questions the driver's orchestrator answers (``engine.asking``); a stage whose decision
    waits for an answer not yet logged is left as it is and its question is in the plan."""
    questions: list[asking.Ask] = []
    plan = _next_actions(state, now, ask, questions)
    return replace(plan, questions=questions) if questions else plan


def _next_actions(
    state: RunState, now: float, ask: frozenset[str], questions: list[asking.Ask]
) -> Plan:
    if state.ended is not None:
        return Plan(cancel=state.running())
    if state.confirmation == "pending":
        return Plan()  # nothing starts until a human confirms the cost forecast

    spec = state.spec
    decisions: list[ev.Event] = []
    starts: list[StartAttempt] = []
    wake: list[float] = []
    rollback_targets = spec.rollback_targets()

    if spec.limits.timeout is not None:
        deadline = state.started_at + spec.limits.timeout  # creation, or the confirmation
        if now >= deadline:
            return Plan(
                decisions=[ev.RunFailed(reason=f"run timed out after {spec.limits.timeout:g}s")],
                cancel=state.running(),
            )
        wake.append(deadline)

    # one pass over the stages (dict order is spec order), so the steps below touch only
    # the stages they concern: planning stays cheap on long runs
    running: list[str] = []
    due: list[str] = []
    open_: list[str] = []
    done: set[str] = set()
    for sid, st in state.stages.items():
        status = st.status
        if status in DONE_STAGE:
            done.add(sid)
        elif status == "running":
            running.append(sid)
        else:
            if status in _DUE:
                due.append(sid)
            if status in _OPEN:
                open_.append(sid)

    # 1. stages that need a decision about an attempt that just ended or a deadline
    for sid in due:
        s = state.stage_spec(sid)
        st = state.stages[sid]
        if st.status == "attempt_failed":
            failure = _failure_decision(s, st, state, now, ask)
            if isinstance(failure, asking.Ask):
                questions.append(failure)
            else:
                decisions.extend(failure)
        elif st.status == "changes_requested":
            if any(isinstance(d, ev.ReworkRequested | ev.GitStarted) for d in decisions):
                continue  # one rework per pass: it may rerun this stage too (next pass sees it)
            first = commit_first(state, sid)  # what it wrote is committed before the rework
            if first is not True:
                decisions.extend([first] if isinstance(first, ev.GitStarted) else [])
                continue
            back = loops.rework(state, st, s, ask=ask)
            if isinstance(back, asking.Ask):
                questions.append(back)
            else:
                decisions.extend(back)
        elif st.status == "escalated":
            decisions.extend(loops.decided(state, st))
        elif st.status == "blocked":
            decisions.extend(loops.blocked(st, s))
        elif st.status == "awaiting_approval" and st.approval_expires_at is not None:
            if now >= st.approval_expires_at:
                decisions.extend(_approval_expired(s, st))
            else:
                wake.append(st.approval_expires_at)
        elif st.status == "retry_wait" and st.not_before is not None and now < st.not_before:
            wake.append(st.not_before)
    if decisions:
        return Plan(decisions=decisions, wake_at=min(wake) if wake else None)

    # 2. a stage failed for good: cancel the rest, run the rollback stage if any, then end
    if state.failing is not None:
        rb = state.rollback
        others = [r for r in running if r != rb]
        if others:
            return Plan(cancel=others)
        if rb is not None:
            rst = state.stages[rb]
            if rst.status == "pending":
                return Plan(starts=[StartAttempt(rb, rst.attempt + 1, "initial")])
            if rst.status not in DONE_STAGE:
                return Plan(wake_at=min(wake) if wake else None)
            how = "succeeded" if rst.status == "succeeded" else "also failed"
            reason = (
                f"stage '{state.failing}' failed: {state.stages[state.failing].reason}; "
                f"rollback '{rb}' {how}"
            )
            return Plan(decisions=[ev.RunFailed(reason=reason)])
        return Plan(
            decisions=[
                ev.RunFailed(
                    reason=f"stage '{state.failing}' failed: {state.stages[state.failing].reason}"
                )
            ]
        )

    # git (gitplan): an operation in flight holds every start; commits and conflicts first
    if state.git.pending is not None:
        return Plan(wake_at=min(wake) if wake else None)
    git = git_decisions(state)
    if git:
        return Plan(decisions=git, wake_at=min(wake) if wake else None)

    # 3. schedule pending work
    slots = state.max_concurrent_agents - len(running)
    over_budget = state.budget_usd is not None and state.spent_usd >= state.budget_usd
    # stages whose declared files overlap never run at the same time
    touching = [f for r in running if (f := state.stage_spec(r).files)]
    for sid in open_:
        s = state.stage_spec(sid)
        st = state.stages[sid]
        if sid in rollback_targets and not st.triggered:
            continue
        if st.status == "retry_wait":
            if st.not_before is not None and now < st.not_before:
                continue
            kind: AttemptKind = "retry"
        elif st.status == "pending":
            kind = "initial"
            if st.feedback is not None:
                kind = "rework"
            elif st.attempts and st.attempts[-1].outcome in ("interrupted", "cancelled"):
                kind = "resume"
            elif st.rerun:
                kind = "rerun"
            elif st.attempts:
                kind = "retry"
            if (not st.attempts or st.rerun) and not st.gate_overridden:
                upstream = waits_for(state, s)
                if not done.issuperset(upstream):
                    continue  # the common case: waiting for upstream work
                deps = _deps_state(upstream, state)
                if deps == "wait":
                    continue
                if deps == "never":
                    continue  # an upstream failure ends the run; nothing to do here
                if deps == "skip":
                    decisions.append(
                        ev.StageSkipped(stage=s.id, reason="every upstream stage was skipped")
                    )
                    continue
                if s.when is not None and not _eval(s.when, state, s):
                    decisions.append(ev.StageSkipped(stage=s.id, reason=f"when false: {s.when}"))
                    continue
                if s.gate is not None and not _eval(s.gate, state, s):
                    decisions.append(ev.GateBlocked(stage=s.id, condition=s.gate))
                    continue
        else:
            continue
        if state.paused:
            continue
        if s.for_each is not None:  # not an attempt: the plan's items become its sub-stages
            decisions.extend(expansion(state, s))
            continue
        if over_budget:
            decisions.append(
                ev.RunPaused(
                    reason=f"run budget exhausted: ${state.spent_usd:.4f} spent of "
                    f"${state.budget_usd:.2f}; resume with a higher budget or cancel",
                    by="engine",
                    budget_exceeded=True,
                )
            )
            break
        if slots <= 0:
            continue
        if s.files and any(files_overlap(s.files, other) for other in touching):
            continue  # it starts once the stage touching the same files has finished
        merge_first = start_gate(state, sid)  # the branches it joins, merged before it starts
        if merge_first is False:
            continue
        if merge_first is not True:
            decisions.append(merge_first)
            break
        if s.files:
            touching.append(s.files)
        slots -= 1
        starts.append(
            StartAttempt(
                s.id, st.attempt + 1, kind, feedback=st.feedback if kind == "rework" else None
            )
        )

    if decisions:
        return Plan(decisions=decisions, wake_at=min(wake) if wake else None)
    if starts:
        return Plan(starts=starts, wake_at=min(wake) if wake else None)

    # 4. finished?
    normal = [st for sid, st in state.stages.items() if sid not in rollback_targets or st.triggered]
    if all(st.status in DONE_STAGE for st in normal) and not running:
        last = final_merge(state)  # isolated branches nothing joined
        if last is True:
            return Plan(decisions=[ev.RunCompleted()])
        return Plan(decisions=[] if last is False else [last], wake_at=min(wake) if wake else None)
    if not state.paused and all(st.status in DONE_STAGE or st.status == "pending" for st in normal):
        # Nothing runs, waits for a human or backs off, yet work remains: it sits behind a
        # stage that failed for good (e.g. one of two failed stages was retried and passed).
        failed = [st for st in normal if st.status in ("failed", "cancelled") and not st.tolerated]
        if failed:
            stuck = [st.id for st in normal if st.status == "pending"]
            why = "; ".join(f"stage '{st.id}' {st.status}: {st.reason}" for st in failed)
            return Plan(decisions=[ev.RunFailed(reason=f"{why} ({', '.join(stuck)} cannot run)")])
    return Plan(wake_at=min(wake) if wake else None)


def _approval_expired(s: StageSpec, st: StageState) -> list[ev.Event]:
    assert s.approval is not None
    action = s.approval.on_timeout
    waited = f"approval of '{s.id}' timed out after {s.approval.timeout:g}s"
    if action == "approve":
        return [
            ev.ApprovalDecided(
                stage=s.id,
                decision="approve",
                approver="timeout",
                automatic=True,
                feedback=waited,
                attempt=st.attempt,
                via="timeout",
            )
        ]
    if action == "cancel":
        return [ev.RunCancelled(reason=waited, by="timeout")]
    policy = s.on_failure
    tolerated = policy.action == "continue" or (
        policy.action == "retry" and policy.then == "continue"
    )
    return [ev.StageFailed(stage=s.id, reason=waited, tolerated=tolerated)]
