"""Pydantic models of a workflow template.

A template is YAML (or TOML) with ``name``, ``description``, ``inputs``, ``limits`` and
``stages``. Short forms are accepted and normalised here, so the rest of the code sees one shape:

- ``approval: required`` -> ``Approval(required=True)``; ``approval: none`` -> no approval.
- ``on_failure: retry`` / ``{retry: {max_attempts: 3, backoff: 5s}}`` / ``{rollback: undo}``.
- durations as seconds or ``30s``/``10m``/``2h``.

Cross-stage checks (unknown ids, cycles, ``needs`` that are not upstream, conditions) live in
``stageflow.workflows.validate``; these models check only what one field can know alone.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    field_validator,
    model_serializer,
    model_validator,
)

from stageflow.base import Model
from stageflow.workflows.debate_spec import DebateSpec
from stageflow.workflows.durations import parse_duration
from stageflow.workflows.inputs import InputType, coerce_input

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# a task type a template or stage states (the learning profiles' key): a short lower-case word
TASK_TYPE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
MAX_CANDIDATES = 16  # agents one stage may list


def _task_type(v: object) -> object:
    if v is None:
        return None
    if not isinstance(v, str) or not TASK_TYPE.match(v.strip()):
        raise ValueError(
            f"task_type must be a short lower-case word (letters, digits, - or _; at most 40), "
            f"got {v!r}"
        )
    return v.strip()


TaskType = Annotated[str | None, BeforeValidator(_task_type)]
PLAN_MODELS = ("opus", "sonnet", "haiku")  # what a plan's items may name unless the template says
PLAN_ARTIFACT = "plan"  # the artifact the engine writes for a plan stage


def _duration(v: object) -> object:
    return None if v is None else parse_duration(v)


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
OptDuration = Annotated[float | None, BeforeValidator(_duration)]


class _Model(Model):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Model):
    """One declared input of a template."""

    type: InputType = "string"
    required: bool = False
    default: Any = None
    description: str = ""


class Limits(_Model):
    """Run-level limits."""

    max_concurrent_agents: int = Field(3, ge=1, le=64)
    budget_usd: float | None = Field(None, ge=0)
    timeout: OptDuration = None


ApprovalTimeoutAction = Literal["fail", "approve", "cancel"]


class Approval(_Model):
    """A human approves the stage's result, or rejects it with feedback (the stage reruns).

    ``by: human`` takes decisions only from a person: the CLI, the dashboard, or an MCP
    elicitation the server sends the user (a model calling ``workflow_approve`` is not one).
    ``by: any`` also takes the assistant's call. ``approvers`` names who may decide;
    ``min_approvals`` distinct approvals pass the gate, and one rejection reworks the stage.
    """

    required: bool = True
    timeout: OptDuration = None
    on_timeout: ApprovalTimeoutAction = "fail"
    prompt: str = ""  # what the reviewer should look at; shown at the gate
    by: Literal["human", "any"] = "any"
    approvers: tuple[str, ...] = ()
    min_approvals: int = Field(1, ge=1, le=20)

    @model_validator(mode="after")
    def _enough_approvers(self) -> Approval:
        if self.by == "human" and self.on_timeout == "approve":
            raise ValueError(
                "on_timeout: approve would pass a by: human gate with nobody deciding; use "
                "fail or cancel, or by: any"
            )
        if self.approvers and self.min_approvals > len(set(self.approvers)):
            raise ValueError(
                f"min_approvals is {self.min_approvals} but only {len(set(self.approvers))} "
                "distinct approvers are named"
            )
        return self


OnConflict = Literal["agent", "human"]
FailureAction = Literal["fail", "continue", "retry", "rollback"]


class OnFailure(_Model):
    """What happens when a stage attempt fails.

    ``retry`` tries again up to ``max_attempts`` attempts in all, waiting ``backoff`` seconds
    before the second attempt and multiplying by ``backoff_factor`` each time (capped at
    ``max_backoff``); when retries are exhausted, ``then`` applies (``fail``, ``continue`` or
    ``rollback``). ``rollback`` runs the stage named in ``rollback`` and then fails the run.
    """

    action: FailureAction = "fail"
    max_attempts: int = Field(3, ge=1, le=100)
    backoff: Duration = 1.0
    backoff_factor: float = Field(2.0, ge=1.0)
    max_backoff: Duration = 300.0
    then: Literal["fail", "continue", "rollback"] = "fail"
    rollback: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"action": data}
        if isinstance(data, dict) and "action" not in data:
            if "retry" in data:
                retry = data["retry"]
                rest = {k: v for k, v in data.items() if k != "retry"}
                if isinstance(retry, dict):
                    return {"action": "retry", **retry, **rest}
                if isinstance(retry, int) and not isinstance(retry, bool):
                    return {"action": "retry", "max_attempts": retry, **rest}
                return {"action": "retry", **rest}
            if "rollback" in data:
                return {"action": "rollback", **data}
        return data

    @model_validator(mode="after")
    def _rollback_named(self) -> OnFailure:
        uses_rollback = self.action == "rollback" or (
            self.action == "retry" and self.then == "rollback"
        )
        if uses_rollback and not self.rollback:
            raise ValueError("on_failure rollback needs the name of the rollback stage")
        return self

    def backoff_for(self, failed_attempts: int) -> float:
        """Seconds to wait before the next attempt after ``failed_attempts`` failures."""
        delay = self.backoff * self.backoff_factor ** max(0, failed_attempts - 1)
        return float(min(delay, self.max_backoff))


def _gate(v: object) -> object:
    """``gate: {must_pass: N}`` is sugar for ``passed >= N`` (N of the upstream passed)."""
    if isinstance(v, dict):
        if set(v) != {"must_pass"}:
            raise ValueError(f"gate must be a condition or {{must_pass: N}}, got {v!r}")
        n = v["must_pass"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"must_pass needs a whole number of stages >= 1, got {n!r}")
        return f"passed >= {n}"
    return v


def _approval(v: object) -> object:
    if v is None or v is False:
        return None
    if v is True:
        return {"required": True}
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("none", "no", "off", "optional", "false", ""):
            return None
        if low in ("required", "yes", "true", "on"):
            return {"required": True}
        raise ValueError(f"approval must be 'required', 'none' or a mapping, got {v!r}")
    return v


class PlanRules(_Model):
    """A plan stage: its agent returns a structured plan of work items, which a ``for_each``
    stage expands into one sub-stage per item. ``agents`` are the agents an item may name
    (besides the ``for_each`` stage's own); ``item_budget_usd`` is what one item is expected to
    cost, for the budget check before expansion (default: the ``for_each`` stage's
    ``budget_usd``, else its agent's)."""

    max_items: int = Field(8, ge=1, le=50)
    agents: list[str] = Field(default_factory=list)
    # the models an item may name: aliases by default, never an id the price table may not
    # know (an unpriced model's requests would cost nothing against the caps)
    models: list[str] = Field(default_factory=lambda: list(PLAN_MODELS))
    item_budget_usd: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {} if data is True or data is None else data


class ReworkRule(_Model):
    """``on_changes_requested``: ``changes_requested`` (or a rejection at the approval) sends
    work back to the upstream ``rework`` (or an ``alternatives`` stage the orchestrator picks;
    a ``for_each``: items with findings) with the findings, ``max`` rounds; then escalates."""

    rework: str
    max: int = Field(2, ge=1, le=20)
    alternatives: list[str] = Field(default_factory=list, max_length=20)


class Escalation(_Model):
    """``escalate``: who decides when a gate is false or rework rounds run out: a decision
    ``agent`` (at most ``max`` times; it approves, rejects with feedback or hands over to a
    human), else a human. A human escalation is a waiting gate only a human decision passes."""

    agent: str | None = None
    max: int = Field(1, ge=1, le=5)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {} if data.strip().lower() == "human" else {"agent": data}
        return data


def _no_plan(v: object) -> object:
    return None if v is False else v


class StageSpec(_Model):
    """One stage: an agent run (``agent``), a command (``run``) or a debate (``debate``).

    ``agent`` may list candidates (``agent: [backend-developer, developer]``): ``agent`` is then
    the first, the fallback, and ``candidates`` all of them in order; the learning profiles
    rank them at each attempt (``stageflow.learning``). Dumped, the list is written back as
    ``agent``, so a spec snapshot reads as the template did.
    """

    id: str
    description: str = ""
    agent: str | None = None
    candidates: tuple[str, ...] = ()  # from ``agent: [a, b]``; empty for a single agent
    task_type: TaskType = None  # the profiles' task type; inferred when absent
    run: str | None = None
    debate: DebateSpec | None = None
    depends_on: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list)
    produces: list[str] = Field(default_factory=list)
    # may the stage hand back artifacts it does not declare? (refused by default: a model's
    # stray names would otherwise become artifacts nobody asked for)
    produces_extra: bool = False
    approval: Annotated[Approval | None, BeforeValidator(_approval)] = None
    when: str | None = None
    gate: Annotated[str | None, BeforeValidator(_gate)] = None
    on_failure: OnFailure = Field(default_factory=OnFailure)
    timeout: OptDuration = None
    model: str | None = None
    budget_usd: float | None = Field(None, ge=0)
    max_rework: int = Field(2, ge=0, le=20)
    bash: list[str] = Field(default_factory=list)  # extra command patterns for this stage
    # the stage's commands (Bash, a `run:` command) may use the network; off by default
    network: StrictBool = False
    knowledge_tokens: int | None = Field(None, ge=0)  # knowledge injected per attempt; 0: none
    # at a join (this stage's start merged other stages' branches): a command checking the
    # merge ("" for none; unset: the template's), and who resolves a conflicting merge
    verify: str | None = None
    on_conflict: OnConflict | None = None
    # run-time decomposition and loops (see ``stageflow.workflows.plan``)
    plan: Annotated[PlanRules | None, BeforeValidator(_no_plan)] = None  # returns work items
    for_each: str | None = None  # one sub-stage per item of this plan stage's plan
    files: list[str] = Field(default_factory=list)  # stages whose files overlap never run at once
    on_changes_requested: ReworkRule | None = None
    escalate: Escalation | None = None
    optional: bool = False  # may be skipped at run time (``workflow_adjust``)
    line: int | None = Field(None, exclude=True, repr=False)

    @field_validator("id")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not IDENT.fullmatch(v):
            raise ValueError(
                f"stage id {v!r} must start with a letter or _ and contain only letters, "
                "digits and _"
            )
        return v

    @field_validator("depends_on", "needs", "produces", "files", mode="before")
    @classmethod
    def _listify(cls, v: object) -> object:
        if isinstance(v, str):
            return [v]
        return [] if v is None else v

    @model_validator(mode="before")
    @classmethod
    def _agent_list(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("agent"), list | tuple):
            return data
        names = list(data["agent"])
        if not names:
            raise ValueError("agent: an empty list names no agent; list one or more")
        if len(names) > MAX_CANDIDATES:
            raise ValueError(f"agent: at most {MAX_CANDIDATES} candidates, got {len(names)}")
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ValueError(f"agent: every candidate must be an agent name, got {bad[0]!r}")
        clean = [n.strip() for n in names]
        twice = sorted({n for n in clean if clean.count(n) > 1})
        if twice:
            raise ValueError(f"agent: '{twice[0]}' is listed more than once")
        rest = {k: v for k, v in data.items() if k != "agent"}
        if len(clean) == 1:
            return {**rest, "agent": clean[0]}
        return {**rest, "agent": clean[0], "candidates": clean}

    @model_validator(mode="before")
    @classmethod
    def _plan_artifact(cls, data: Any) -> Any:
        # a plan stage produces ``plan``: the engine writes it from the validated items
        if not isinstance(data, dict) or data.get("plan") in (None, False):
            return data
        produces = data.get("produces")
        if produces is None:
            produces = []
        elif isinstance(produces, str):
            produces = [produces]
        if isinstance(produces, list) and PLAN_ARTIFACT not in produces:
            return {**data, "produces": [*produces, PLAN_ARTIFACT]}
        return data

    @model_validator(mode="after")
    def _agent_or_run(self) -> StageSpec:
        if sum((bool(self.agent), bool(self.run), self.debate is not None)) != 1:
            raise ValueError("a stage needs exactly one of 'agent', 'run' or 'debate'")
        if self.debate is not None and not self.produces:
            raise ValueError("a debate stage must produce an artifact (its decision record)")
        if self.candidates and (self.candidates[0] != self.agent or len(self.candidates) < 2):
            raise ValueError("candidates must start with the stage's agent and list two or more")
        return self

    @model_serializer(mode="wrap")
    def _agent_as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.candidates:
            data["agent"] = list(self.candidates)
        data.pop("candidates", None)
        if self.task_type is None:
            data.pop("task_type", None)  # absent stays absent: old snapshots keep their shape
        return data

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent that may run this stage, the default first (empty for a command)."""
        if self.candidates:
            return self.candidates
        return (self.agent,) if self.agent else ()

    @property
    def kind(self) -> Literal["agent", "command", "debate"]:
        if self.debate is not None:
            return "debate"
        return "agent" if self.agent else "command"

    def agent_names(self) -> list[str]:
        """Every agent the stage uses: its ``agent``, or its debate's participants and
        moderator."""
        if self.debate is not None:
            return self.debate.agent_names()
        return [self.agent] if self.agent else []

    @property
    def required_artifacts(self) -> list[str]:
        """What the agent itself must hand back: ``produces`` minus what the engine writes."""
        if self.plan is None:
            return list(self.produces)
        return [p for p in self.produces if p != PLAN_ARTIFACT]

    def needed(self) -> list[tuple[str, str]]:
        """``needs`` split into (stage, artifact) pairs; malformed entries are skipped."""
        out = []
        for item in self.needs:
            stage, _, art = item.partition(".")
            if stage and art:
                out.append((stage, art))
        return out


class WorkflowSpec(_Model):
    """A whole template."""

    name: str
    description: str = ""
    version: str = "1"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    # where agent stages work: a git worktree per run (auto/worktree), or the project itself
    workspace: Literal["auto", "worktree", "in_place"] | None = None
    bash: list[str] = Field(default_factory=list)  # command patterns Bash may run, e.g. "pytest*"
    task_type: TaskType = None  # every stage's task type unless the stage states its own
    verify: str | None = None  # run after the merges at a join, e.g. the test command
    on_conflict: OnConflict = "agent"  # a conflicting merge: the merge-resolver agent, or a human
    stages: list[StageSpec] = Field(min_length=1)
    source: str | None = Field(None, exclude=True, repr=False)

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.task_type is None:
            data.pop("task_type", None)
        return data

    @field_validator("inputs", mode="before")
    @classmethod
    def _input_short_forms(cls, v: object) -> object:
        # ``inputs: {task: string}`` is accepted as ``{task: {type: string}}``
        if isinstance(v, dict):
            return {k: ({"type": t} if isinstance(t, str) else t) for k, t in v.items()}
        return {} if v is None else v

    @cached_property
    def _by_id(self) -> dict[str, StageSpec]:
        return {s.id: s for s in self.stages}

    def stage(self, stage_id: str) -> StageSpec:
        """The stage with this id; ``KeyError`` if none."""
        return self._by_id[stage_id]

    @property
    def stage_ids(self) -> list[str]:
        return [s.id for s in self.stages]

    def rollback_targets(self) -> frozenset[str]:
        """Stages that run only when another stage's failure policy calls them."""
        return self._rollback_targets

    @cached_property
    def _rollback_targets(self) -> frozenset[str]:
        return frozenset(s.on_failure.rollback for s in self.stages if s.on_failure.rollback)

    def resolve_inputs(self, given: dict[str, Any]) -> dict[str, Any]:
        """Apply defaults and check required inputs and types; raises ``ValueError``."""
        out: dict[str, Any] = {}
        unknown = sorted(set(given) - set(self.inputs) - {"task"})
        if unknown:
            raise ValueError(
                f"unknown input(s) {', '.join(unknown)}; template '{self.name}' accepts: "
                f"{', '.join(sorted(self.inputs)) or 'none'}"
            )
        for name, spec in self.inputs.items():
            if name in given:
                out[name] = coerce_input(name, spec.type, given[name])
            elif spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                raise ValueError(f"input '{name}' is required by template '{self.name}'")
        return out
