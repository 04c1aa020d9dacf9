"""The event vocabulary of a run.

A run's state is a fold over its events (``stageflow.engine.state.apply``). Events are pydantic
models with a ``type`` discriminator; they are stored as JSON in an append-only, SHA-256
hash-chained log. ``Envelope`` is an event with its position, time, actor and chain hashes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from stageflow.base import Model
from stageflow.events.base import ArtifactRef as ArtifactRef
from stageflow.events.base import _Event
from stageflow.events.git import GitFinished as GitFinished
from stageflow.events.git import GitOp as GitOp
from stageflow.events.git import GitOutcome as GitOutcome
from stageflow.events.git import GitStarted as GitStarted
from stageflow.usage import Usage

GENESIS_HASH = "0" * 64


class RunCreated(_Event):
    type: Literal["run_created"] = "run_created"
    template: str
    task: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any]  # snapshot of the WorkflowSpec
    agents: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> AgentDefinition
    budget_usd: float | None = None
    runner: str = "offline"
    workdir: str = "."
    # template="auto": the orchestrator's choice {template, reason, by, model, fallback,
    # cost_usd}; absent otherwise
    chosen: dict[str, Any] | None = None
    # the cost forecast made before the run started (``stageflow.engine.forecasts.RunForecast``)
    forecast: dict[str, Any] | None = None
    # set when the run must wait for a human to confirm its forecast (``[budget]
    # confirm_above_usd``): the threshold the forecast's p90 passed
    confirm_above_usd: float | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # entries logged before these fields existed still hash to what was stored
        data: dict[str, Any] = handler(self)
        for key in ("chosen", "forecast", "confirm_above_usd"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class StageSkipped(_Event):
    type: Literal["stage_skipped"] = "stage_skipped"
    stage: str
    reason: str


class GateBlocked(_Event):
    type: Literal["gate_blocked"] = "gate_blocked"
    stage: str
    condition: str


class GateDecided(_Event):
    type: Literal["gate_decided"] = "gate_decided"
    stage: str
    decision: Literal["approve", "reject"]
    feedback: str | None = None
    approver: str = "human"


class AttemptStarted(_Event):
    type: Literal["attempt_started"] = "attempt_started"
    stage: str
    attempt: int
    # rerun: the stage ran before, and a rework upstream of it asks for it again
    kind: Literal["initial", "retry", "rework", "resume", "rerun"] = "initial"
    agent: str | None = None
    agent_hash: str | None = None
    model: str | None = None
    owner: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)  # what went into the attempt
    # the agent's definition when it differs from the run's current one (hot reload): folding
    # the log then reproduces exactly what every attempt used
    agent_def: dict[str, Any] | None = None
    # how the agent and model were chosen when the stage left a choice (candidates, ``model:
    # auto``): the task type, every candidate's scores and the rule that decided; replay reads
    # the choice from here and never recomputes it
    choice: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_definition(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # absent stays absent in the payload, so entries logged before the field existed
        # still hash to what was stored
        data: dict[str, Any] = handler(self)
        for key in ("agent_def", "choice"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


AttemptOutcome = Literal[
    "passed",
    "failed",
    "changes_requested",
    "timed_out",
    "cancelled",
    "interrupted",
    "budget_exceeded",
]


class AttemptFinished(_Event):
    type: Literal["attempt_finished"] = "attempt_finished"
    stage: str
    attempt: int
    outcome: AttemptOutcome
    summary: str = ""
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None  # the model that answered
    model_requested: str | None = None  # the resolved model id asked for (after aliases)
    context: dict[str, Any] = Field(default_factory=dict)  # the context builder's manifest
    runner: str | None = None
    error: str | None = None
    retryable: bool = False
    fatal: bool = False  # retrying cannot help (e.g. rejected credentials): skip the retry policy
    duration_s: float = 0.0
    plan: list[dict[str, Any]] | None = None  # a plan stage's validated items

    @model_serializer(mode="wrap")
    def _omit_absent_plan(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # as for ``agent_def``: entries logged before the field existed hash as stored
        data: dict[str, Any] = handler(self)
        if self.plan is None:
            data.pop("plan", None)
        return data


class ApprovalRequested(_Event):
    type: Literal["approval_requested"] = "approval_requested"
    stage: str
    expires_at: float | None = None


class ApprovalDecided(_Event):
    type: Literal["approval_decided"] = "approval_decided"
    stage: str
    decision: Literal["approve", "reject"]
    feedback: str | None = None
    approver: str = "human"
    automatic: bool = False  # decided by an approval timeout
    attempt: int | None = None  # the attempt (version) the decision was about
    # how it reached stageflow: cli (an OS user), dashboard, elicitation (the server asked the
    # user through their MCP client), tool (the assistant's call), timeout
    via: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # entries logged before these fields existed still hash to what was stored
        data: dict[str, Any] = handler(self)
        for name in ("attempt", "via"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ConfirmationDecided(_Event):
    """A human confirmed the run's cost forecast (it may start) or declined it (cancelled)."""

    type: Literal["confirmation_decided"] = "confirmation_decided"
    decision: Literal["approve", "reject"]
    feedback: str | None = None
    approver: str = "human"
    via: str | None = None  # cli, dashboard, elicitation (a person) or tool (the assistant)


class RetryScheduled(_Event):
    type: Literal["retry_scheduled"] = "retry_scheduled"
    stage: str
    attempt: int  # the attempt number that will run
    not_before: float
    reason: str = ""


class StageFailed(_Event):
    type: Literal["stage_failed"] = "stage_failed"
    stage: str
    reason: str
    tolerated: bool = False  # on_failure: continue


class StageRetryRequested(_Event):
    """A human asked to run a failed (or cancelled) stage again."""

    type: Literal["stage_retry_requested"] = "stage_retry_requested"
    stage: str
    by: str = "human"
    reason: str | None = None


class RollbackStarted(_Event):
    type: Literal["rollback_started"] = "rollback_started"
    failed_stage: str
    rollback_stage: str


class RunPaused(_Event):
    type: Literal["run_paused"] = "run_paused"
    reason: str = ""
    by: str = "human"
    budget_exceeded: bool = False


class RunResumed(_Event):
    type: Literal["run_resumed"] = "run_resumed"
    by: str = "human"
    budget_usd: float | None = None  # a raised budget, when resuming after budget_exceeded
    reason: str | None = None


class RunCancelled(_Event):
    type: Literal["run_cancelled"] = "run_cancelled"
    reason: str = ""
    by: str = "human"


class RunCompleted(_Event):
    type: Literal["run_completed"] = "run_completed"


class RunFailed(_Event):
    type: Literal["run_failed"] = "run_failed"
    reason: str


class DebateTurn(_Event):
    """One participant's statement in a debate stage, logged as soon as it is made (a
    resumed attempt starts at the first turn not logged)."""

    type: Literal["debate_turn"] = "debate_turn"
    stage: str
    attempt: int
    round: int  # 1-based
    participant: str  # its label
    role: str
    model: str | None = None  # the model that answered ("offline" when scripted)
    position: str = ""  # a short stance, e.g. "adopt", "reject", "adopt with changes"
    statement: str = ""
    cost_usd: float = 0.0


class DebateVerdict(_Event):
    """The moderator's verdict on one round, and what the engine made of it."""

    type: Literal["debate_verdict"] = "debate_verdict"
    stage: str
    attempt: int
    round: int
    agreement: float  # 0..1
    positions: dict[str, str] = Field(default_factory=dict)  # participant -> position
    open_points: list[str] = Field(default_factory=list)
    proposed: Literal["continue", "conclude", "redirect"]  # what the moderator said
    action: Literal["continue", "conclude", "redirect"]  # what happens (min/max enforced)
    reason: str = ""
    redirect: str | None = None  # the question for the next round, on redirect
    decided_by: Literal["model", "rules"] = "model"
    model: str | None = None
    fallback: str | None = None  # why the rules decided instead of the model
    cost_usd: float = 0.0  # orchestration spend of this verdict


class PlanExpanded(_Event):
    """A ``for_each`` stage became one sub-stage per item of its plan stage's plan."""

    type: Literal["plan_expanded"] = "plan_expanded"
    stage: str  # the for_each stage
    source: str  # the plan stage
    items: list[dict[str, Any]]  # the validated items (``stageflow.workflows.plan.PlanItem``)


class ReworkRequested(_Event):
    """A stage's ``changes_requested`` sent work back (``on_changes_requested``)."""

    type: Literal["rework_requested"] = "rework_requested"
    stage: str  # the stage that requested changes
    target: str  # the stage sent back (a for_each stage: ``feedback`` names its items)
    round: int
    feedback: dict[str, str]  # stage id -> the feedback it reruns with


class StageEscalated(_Event):
    """A false gate or used-up rework rounds handed to a decision agent or a human."""

    type: Literal["stage_escalated"] = "stage_escalated"
    stage: str
    kind: Literal["gate", "rework", "failure"]  # failure: the orchestrator's triage said human
    to: str  # "human", or the decision agent's name
    reason: str
    findings: str = ""  # the open findings, shown to whoever decides
    round: int = 0  # the decision agent's round (its stage is ``<stage>.decision<round>``)
    by: str = "engine"


class OrchestrationAsked(_Event):
    """A request of the orchestrator is about to be sent: its worst case is the run's spend
    until the answer says what it cost (a process killed in between leaves it counted)."""

    type: Literal["orchestration_asked"] = "orchestration_asked"
    question: Literal["failure", "rework"]
    stage: str
    attempt: int
    round: int = 0
    reserved_usd: float


class OrchestrationDecided(_Event):
    """The orchestrator's answer to one of the engine's questions, and who gave it: a failed
    attempt's triage (``failure``: ``transient`` or ``human``) or where a ``changes_requested``
    goes back to (``rework``: the stage). Logged before the engine acts on it, so a resumed
    run reads it back instead of asking again."""

    type: Literal["orchestration_decided"] = "orchestration_decided"
    question: Literal["failure", "rework"]
    stage: str
    attempt: int  # the attempt that failed, or that asked for changes
    round: int = 0  # rework: the round it opens
    answer: str
    reason: str = ""
    decided_by: Literal["model", "rules"] = "rules"
    model: str | None = None
    fallback: str | None = None  # why the rules decided instead of the model
    candidates: list[str] | None = None  # rework: the stages it could go back to
    cost_usd: float = 0.0
    reserved_usd: float = 0.0  # what its ``orchestration_asked`` held; the cost replaces it

    @model_serializer(mode="wrap")
    def _omit_absent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("model", "fallback", "candidates"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class EscalationDecided(_Event):
    """Who was escalated to decided: approve, reject (with feedback), or hand it to a human."""

    type: Literal["escalation_decided"] = "escalation_decided"
    stage: str
    decision: Literal["approve", "reject", "human"]
    feedback: str | None = None
    approver: str = "human"
    by_agent: bool = False  # a decision agent answered (it never decides a human escalation)


class RunAdjusted(_Event):
    """A run-time change to the run (``workflow_adjust``), validated against its DAG."""

    type: Literal["run_adjusted"] = "run_adjusted"
    action: Literal["add_stage", "skip_stage", "set_concurrency", "escalate"]
    stage: str | None = None
    spec: dict[str, Any] | None = None  # add_stage: the new stage
    before: list[str] = Field(default_factory=list)  # add_stage: stages that now wait for it
    agent_def: dict[str, Any] | None = None  # add_stage/escalate: an agent the run had not
    max_concurrent_agents: int | None = None  # set_concurrency
    to: str | None = None  # escalate: the decision agent
    reason: str | None = None
    by: str = "human"


class LeaseTaken(_Event):
    """A process took over execution of the run (first start, restart or takeover)."""

    type: Literal["lease_taken"] = "lease_taken"
    owner: str
    previous_owner: str | None = None


Event = Annotated[
    RunCreated
    | StageSkipped
    | GateBlocked
    | GateDecided
    | AttemptStarted
    | AttemptFinished
    | ApprovalRequested
    | ApprovalDecided
    | ConfirmationDecided
    | RetryScheduled
    | StageFailed
    | StageRetryRequested
    | RollbackStarted
    | RunPaused
    | RunResumed
    | RunCancelled
    | RunCompleted
    | RunFailed
    | DebateTurn
    | DebateVerdict
    | PlanExpanded
    | ReworkRequested
    | StageEscalated
    | OrchestrationAsked
    | OrchestrationDecided
    | EscalationDecided
    | RunAdjusted
    | LeaseTaken
    | GitStarted
    | GitFinished,
    Field(discriminator="type"),
]
# built on first use, like the models (stageflow.base)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event, config=ConfigDict(defer_build=True))


class Envelope(Model):
    """An event at its place in the log."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    seq: int  # 1-based position in the run's log
    at: float  # unix time
    actor: str
    event: Event
    prev_hash: str
    hash: str


def canonical_json(data: Any) -> str:
    """Stable JSON for hashing: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_payload(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json")


def chain_hash(
    prev_hash: str, run_id: str, seq: int, at: float, actor: str, payload: dict[str, Any]
) -> str:
    """The hash of one log entry: SHA-256 over the previous hash and the canonical entry."""
    body = canonical_json(
        {"run_id": run_id, "seq": seq, "at": at, "actor": actor, "event": payload}
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def seal(run_id: str, seq: int, at: float, actor: str, event: Event, prev_hash: str) -> Envelope:
    """Wrap an event into an envelope with its chain hash."""
    h = chain_hash(prev_hash, run_id, seq, at, actor, event_payload(event))
    return Envelope(
        run_id=run_id, seq=seq, at=at, actor=actor, event=event, prev_hash=prev_hash, hash=h
    )


def verify_chain(envelopes: list[Envelope]) -> list[str]:
    """Recompute every hash; returns the problems found (empty when the chain is intact)."""
    problems: list[str] = []
    prev = GENESIS_HASH
    for i, env in enumerate(envelopes, start=1):
        if env.seq != i:
            problems.append(f"seq {env.seq}: expected seq {i} (gap or reorder)")
        if env.prev_hash != prev:
            problems.append(f"seq {env.seq}: prev_hash does not match the previous entry")
        want = chain_hash(
            env.prev_hash, env.run_id, env.seq, env.at, env.actor, event_payload(env.event)
        )
        if want != env.hash:
            problems.append(f"seq {env.seq}: hash mismatch (entry was altered)")
        prev = env.hash
    return problems
