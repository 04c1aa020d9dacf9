"""The run state's records: ``RunState``, ``StageState``, ``AttemptInfo``, and the statuses.

Pure data (frozen dataclasses) and small pure helpers; the fold that builds them lives in
``stageflow.engine.state`` (template events) and ``stageflow.engine.dynamic`` (expansion,
rework, escalation, adjustments). ``RunState.stage_spec`` is the one way to look up a stage's
spec: template stages, the sub-stages a plan expanded into, decision stages and stages added
at run time alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.gitstate import GitState
from stageflow.engine.lanes import EMPTY_PLAN, LanePlan
from stageflow.usage import Usage
from stageflow.workflows.spec import StageSpec, WorkflowSpec

StageStatus = Literal[
    "pending",  # not started, or waiting for dependencies
    "running",
    "attempt_failed",  # an attempt failed; the planner decides: retry, continue, rollback, fail
    "retry_wait",  # backing off before the next attempt
    "blocked",  # a gate condition is false, or an escalation reached a human: a human decides
    "awaiting_approval",  # finished, a human must approve or reject
    "changes_requested",  # it asked for changes: the planner sends work back or escalates
    "expanded",  # a for_each stage whose items (sub-stages) are not all done
    "escalated",  # a decision agent is deciding for it
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
]
RunStatus = Literal["running", "waiting", "paused", "completed", "failed", "cancelled"]

TERMINAL_RUN: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
DONE_STAGE: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})
HUMAN_WAIT: frozenset[str] = frozenset({"blocked", "awaiting_approval"})
_BUSY: frozenset[str] = frozenset({"running", "retry_wait", "changes_requested"})


@dataclass(frozen=True)
class AttemptInfo:
    """One attempt as seen from the log."""

    number: int
    kind: str
    started_at: float
    agent: str | None = None
    agent_hash: str | None = None
    model_requested: str | None = None  # as the stage or agent named it (an alias, maybe)
    model_resolved: str | None = None  # the model id that was asked for
    model_answered: str | None = None
    runner: str | None = None
    finished_at: float | None = None
    outcome: str | None = None
    summary: str = ""
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    context: dict[str, Any] = field(default_factory=dict)
    choice: dict[str, Any] | None = None  # how agent and model were chosen (attempt_started)


@dataclass(frozen=True)
class Escalation:
    """An open escalation of a stage: why, to whom, and what is still open."""

    kind: Literal["gate", "rework", "failure"]
    to: str  # "human" or a decision agent
    reason: str
    findings: str = ""
    decider: str | None = None  # the decision agent's stage while it decides
    by: str = "engine"


@dataclass(frozen=True)
class StageState:
    """Where one stage stands."""

    id: str
    status: StageStatus = "pending"
    attempts: tuple[AttemptInfo, ...] = ()
    failures: int = 0  # failed attempts since the last reset (counts toward retry max_attempts)
    reworks: int = 0
    feedback: str | None = None  # reviewer feedback waiting to be used by the next attempt
    not_before: float | None = None  # retry backoff
    approval_expires_at: float | None = None
    shown: int = 0  # times a version of this stage was put to a human for approval
    approvals: tuple[str, ...] = ()  # distinct approvers of the attempt waiting (N-of-M)
    gate_overridden: bool = False
    artifacts: dict[str, ev.ArtifactRef] = field(default_factory=dict)  # latest version by name
    outputs: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    reason: str | None = None  # why it failed / was skipped / is blocked
    tolerated: bool = False  # failed, but on_failure: continue
    budget_failed: bool = False
    # spend before the last budget resume: a stage cap applies to what was spent after it, so
    # a stage stopped at its own cap can continue when the human resumes with a raised budget
    budget_base: float = 0.0
    # the orchestrator's spend on questions about this stage (triage, routing): the stage's
    # cap counts it, though it is not an attempt's usage
    asked_usd: float = 0.0
    fatal: bool = False  # the last failure cannot be fixed by retrying
    transient: bool = False  # the last failure was the provider's (network, overload): retry it
    triggered: bool = False  # a rollback stage that was called
    usage: Usage = field(default_factory=Usage)
    # a debate stage's turns and verdicts since its last fresh start (a rework starts anew)
    debate: tuple[ev.DebateTurn | ev.DebateVerdict, ...] = ()
    plan: tuple[dict[str, Any], ...] | None = None  # a plan stage's validated items
    rerun: bool = False  # pending again because work upstream was sent back: wait, re-check
    rounds: int = 0  # rework rounds this stage requested
    granted: int = 0  # extra rounds an escalation granted (a reject with feedback)
    note: str | None = None  # the decider's feedback for the next round
    feedback_from: str | None = None  # the stage whose findings ``feedback`` carries
    escalation: Escalation | None = None
    escalations: int = 0  # decision-agent rounds so far

    @property
    def attempt(self) -> int:
        return len(self.attempts)

    @property
    def capped_usd(self) -> float:
        """What the stage's ``budget_usd`` counts: its spend (attempts and the questions about
        them) since the last budget resume."""
        return self.usage.cost_usd + self.asked_usd - self.budget_base

    @property
    def current(self) -> AttemptInfo | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def duration_s(self) -> float:
        return sum(
            (a.finished_at - a.started_at) for a in self.attempts if a.finished_at is not None
        )


@dataclass(frozen=True)
class RunState:
    """A run: a fold over its event log."""

    run_id: str
    template: str
    task: str
    spec: WorkflowSpec
    agents: dict[str, AgentDefinition]
    inputs: dict[str, Any]
    stages: dict[str, StageState]
    created_at: float
    updated_at: float
    runner: str = "offline"
    workdir: str = "."
    budget_usd: float | None = None
    seq: int = 0
    head_hash: str = ev.GENESIS_HASH
    ended: Literal["completed", "failed", "cancelled"] | None = None
    end_reason: str | None = None
    paused: bool = False
    pause_reason: str | None = None
    budget_paused: bool = False
    failing: str | None = None  # a stage failed for good; the run ends once nothing runs
    rollback: str | None = None  # the rollback stage running for ``failing``
    owner: str | None = None
    spent: float = 0.0  # USD over every attempt, kept as events are applied (read spent_usd)
    orchestration: float = 0.0  # USD spent on orchestration (moderators, template choice)
    chosen: dict[str, Any] | None = None  # template="auto": the orchestrator's choice
    forecast: dict[str, Any] | None = None  # the cost forecast made at creation
    # "pending": a human must confirm the forecast before anything starts (confirm_above_usd)
    confirmation: Literal["pending", "confirmed"] | None = None
    confirm_above_usd: float | None = None
    started_at: float = 0.0  # creation, or the confirmation: the run's timeout counts from it
    git: GitState = field(default_factory=GitState)  # branches, commits, merges, lands
    lanes: LanePlan = EMPTY_PLAN  # which template stages write in a worktree of their own
    # specs not in the template (plan items, decision stages, stages added at run time) and
    # template stages as adjusted at run time; read them through ``stage_spec``
    overrides: dict[str, StageSpec] = field(default_factory=dict)
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)  # for_each -> items
    parent_of: dict[str, str] = field(default_factory=dict)  # item -> its for_each stage
    concurrency: int | None = None  # max_concurrent_agents raised at run time
    adjustments: tuple[str, ...] = ()  # one line per run-time adjustment, for status
    # the orchestrator's recorded answers, by ``engine.asking.answer_key`` (read back on replay)
    answers: dict[str, ev.OrchestrationDecided] = field(default_factory=dict)

    def stage_spec(self, stage_id: str) -> StageSpec:
        """The spec of any stage of the run; ``KeyError`` if none."""
        found = self.overrides.get(stage_id)
        return found if found is not None else self.spec.stage(stage_id)

    @property
    def max_concurrent_agents(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        return self.spec.limits.max_concurrent_agents

    @property
    def status(self) -> RunStatus:
        if self.ended is not None:
            return self.ended
        if self.paused:
            return "paused"
        if self.confirmation == "pending":
            return "waiting"
        human = False
        for st in self.stages.values():
            if st.status in _BUSY:
                return "running"
            human = human or st.status in HUMAN_WAIT
        return "waiting" if human else "running"

    @property
    def spent_usd(self) -> float:
        return round(self.spent, 10)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for s in self.stages.values():
            total = total + s.usage
        return total

    def running(self) -> list[str]:
        return [sid for sid, s in self.stages.items() if s.status == "running"]


def put(state: RunState, stage: StageState, **run_changes: Any) -> RunState:
    """``state`` with ``stage`` replaced (and run fields changed)."""
    stages = dict(state.stages)
    stages[stage.id] = stage
    return replace(state, stages=stages, **run_changes)


def fail_stage(state: RunState, st: StageState, reason: str) -> RunState:
    """A decision (a human's, or a decision agent's on a false gate) failed the stage: no
    retry; ``continue`` policies still tolerate it."""
    policy = state.stage_spec(st.id).on_failure
    tolerated = policy.action == "continue" or (
        policy.action == "retry" and policy.then == "continue"
    )
    failed = replace(st, status="failed", reason=reason, tolerated=tolerated, escalation=None)
    if tolerated or state.failing is not None:
        return put(state, failed)
    return put(state, failed, failing=st.id)


def inserted(
    stages: Mapping[str, StageState], new: list[StageState], *, after: str | None = None
) -> dict[str, StageState]:
    """``stages`` with ``new`` placed right after ``after`` (at the end when None), so status
    lists a stage's items and decisions next to it."""
    if after is None or after not in stages:
        return {**stages, **{s.id: s for s in new}}
    out: dict[str, StageState] = {}
    for sid, st in stages.items():
        out[sid] = st
        if sid == after:
            out.update({s.id: s for s in new})
    return out


def settled_parent(parent: StageState, items: list[StageState]) -> StageState:
    """A for_each stage's status from its items: ``expanded`` until every item is done, then
    ``failed`` (an item failed for good), ``skipped`` (all skipped) or ``succeeded``."""
    if any(i.status not in DONE_STAGE for i in items):
        if parent.status == "expanded":
            return parent
        return replace(parent, status="expanded", reason=None)
    failed = [i.id for i in items if i.status in ("failed", "cancelled") and not i.tolerated]
    done = sum(1 for i in items if i.status == "succeeded")
    outputs = {**parent.outputs, "items": len(items), "succeeded": done}
    if failed:
        status: StageStatus = "failed"
        reason: str | None = f"item(s) {', '.join(failed)} did not succeed"
    elif all(i.status == "skipped" for i in items):
        status, reason = "skipped", "every item was skipped"
    else:
        status, reason = "succeeded", None
        outputs["verdict"] = "passed"
    if parent.status == status and parent.outputs == outputs and parent.reason == reason:
        return parent
    return replace(parent, status=status, reason=reason, outputs=outputs)


def settle_parents(before: RunState, after: RunState) -> RunState:
    """Recompute the status of every for_each stage one of whose items changed."""
    if not after.children:
        return after
    stages: dict[str, StageState] | None = None
    for parent, items in after.children.items():
        if all(before.stages.get(i) is after.stages[i] for i in items) and (
            before.stages.get(parent) is after.stages[parent]
        ):
            continue
        current = (stages or after.stages)[parent]
        settled = settled_parent(current, [after.stages[i] for i in items])
        if settled is not current:
            stages = stages if stages is not None else dict(after.stages)
            stages[parent] = settled
    return after if stages is None else replace(after, stages=stages)
