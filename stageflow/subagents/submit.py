"""The finishing tool ``submit_result``: its definition, and the check a submission must pass.

A stage attempt on the API runner ends only when the model calls ``submit_result`` with a
submission that passes ``check_submission``. A refused submission goes back to the model as an
error tool result naming exactly what is wrong, and the loop continues.

Required ``produces`` artifacts are enforced for ``passed`` and ``changes_requested`` (the same
rule the engine applies when it records an attempt); a ``failed`` submission may come without
them, so a model that cannot do the task can say so instead of inventing artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard, get_args

from stageflow.engine.runner import AttemptRequest, AttemptStatus, undeclared_artifacts
from stageflow.workflows.plan import PlanItem, PlanLimits, check_plan, plan_schema

__all__ = [
    "SUBMIT_TOOL",
    "PlanCheck",
    "Submission",
    "check_submission",
    "plan_checker",
    "plan_refusal",
    "submit_tool_definition",
]

# a plan stage's check: the validated items, or the problems to tell the model
PlanCheck = Callable[[object], "tuple[PlanItem, ...] | list[str]"]

SUBMIT_TOOL = "submit_result"

STATUSES: tuple[str, ...] = get_args(AttemptStatus)
_FIELDS = ("status", "summary", "artifacts", "outputs")
_NEEDS_ARTIFACTS = ("passed", "changes_requested")


@dataclass(frozen=True)
class Submission:
    """A valid ``submit_result`` call."""

    status: AttemptStatus
    summary: str
    artifacts: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None  # a plan stage's plan, checked


def plan_checker(request: AttemptRequest) -> PlanCheck | None:
    """The plan check of a plan stage's attempt (None for other stages): the engine's limits
    and, at the moment of the check, what the run's budget still allows."""
    limits = request.plan_limits
    if limits is None:
        return None

    def check(raw: object) -> tuple[PlanItem, ...] | list[str]:
        return check_plan(raw, limits, remaining_usd=request.meter.remaining_usd())

    return check


def plan_refusal(problems: Sequence[str]) -> str:
    """The problems of a refused plan, numbered, as the model reads them."""
    listed = "; ".join(f"({n}) {p}" for n, p in enumerate(problems, 1))
    return f"the plan was refused: {listed}"


def _names(produces: Sequence[str]) -> str:
    return ", ".join(produces) if produces else "those your brief lists under 'You must produce'"


def submit_tool_definition(
    produces: Sequence[str], plan: PlanLimits | None = None
) -> dict[str, Any]:
    """The Messages API definition of ``submit_result`` for a stage producing ``produces``;
    a plan stage's (``plan`` given) also takes the plan, whose schema it declares."""
    artifact_props = {
        name: {"type": "string", "description": f"The full text of the '{name}' artifact."}
        for name in produces
    }
    artifacts: dict[str, Any] = {
        "type": "object",
        "description": (
            "Artifact name -> full text. Required: "
            f"{_names(produces)}. Write each artifact in full; nothing else is kept."
        ),
        "properties": artifact_props,
        "additionalProperties": {"type": "string"},
    }
    if produces:
        artifacts["required"] = list(produces)
    definition: dict[str, Any] = {
        "name": SUBMIT_TOOL,
        "description": (
            "Finish this stage. Call it exactly once, when the work is done, with the final "
            f"artifacts. Required artifacts: {_names(produces)} (each a non-empty text; they "
            "may be left out only with status 'failed'). status: 'passed' when the stage's "
            "goal is met, 'changes_requested' when reviewing work that must change, 'failed' "
            "when the goal cannot be met (say why in summary). outputs: small structured "
            'values later stages or gates read, e.g. {"passed": true}.'
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": list(STATUSES)},
                "summary": {
                    "type": "string",
                    "description": "A few sentences on what was done and the outcome.",
                },
                "artifacts": artifacts,
                "outputs": {
                    "type": "object",
                    "description": 'Structured results (JSON values), e.g. {"approved": false}.',
                },
            },
            "required": ["status", "summary", *(["artifacts"] if produces else [])],
        },
    }
    if plan is not None:
        schema: dict[str, Any] = definition["input_schema"]
        schema["properties"]["plan"] = plan_schema(plan)
        schema["required"].append("plan")
        definition["description"] += (
            " This is a plan stage: `plan` holds the work items (required with status "
            "'passed'); the engine checks it and writes the `plan` artifact itself."
        )
    return definition


def _is_status(value: object) -> TypeGuard[AttemptStatus]:
    return value in STATUSES


def _type_name(value: object) -> str:
    return type(value).__name__ if value is not None else "null"


def check_submission(
    args: dict[str, Any],
    produces: Sequence[str],
    plan: PlanCheck | None = None,
    *,
    extra_allowed: bool = False,
) -> Submission | str:
    """Validate a ``submit_result`` call; a ``str`` says what is wrong, for the model to fix.
    With ``plan`` (a plan stage), a passing submission must carry a plan that passes it.
    Artifacts the stage does not declare are refused unless ``extra_allowed``."""
    wrong: list[str] = []
    status = args.get("status")
    if not _is_status(status):
        wrong.append(f"status must be one of {', '.join(STATUSES)} (got {json.dumps(status)})")
    summary = args.get("summary")
    if not isinstance(summary, str):
        wrong.append(f"summary must be a string (got {_type_name(summary)})")
    raw_artifacts = args.get("artifacts", {})
    artifacts: dict[str, str] = {}
    if not isinstance(raw_artifacts, dict):
        wrong.append(
            f"artifacts must be an object of name -> text (got {_type_name(raw_artifacts)})"
        )
    else:
        for name, text in raw_artifacts.items():
            if isinstance(text, str):
                artifacts[str(name)] = text
            else:
                wrong.append(f"artifact '{name}' must be a string (got {_type_name(text)})")
    outputs = args.get("outputs", {})
    if not isinstance(outputs, dict):
        wrong.append(f"outputs must be an object (got {_type_name(outputs)})")
    fields = (*_FIELDS, "plan") if plan is not None else _FIELDS
    unknown = sorted(k for k in args if k not in fields)
    if unknown:
        wrong.append(
            f"unknown field(s): {', '.join(unknown)} (the fields are {', '.join(fields)}; "
            "artifacts go inside 'artifacts')"
        )
    if isinstance(raw_artifacts, dict) and not extra_allowed:
        extra = sorted(str(k) for k in raw_artifacts if k not in produces)
        if extra:
            wrong.append(undeclared_artifacts(extra, produces))
    checked_plan: dict[str, Any] | None = None
    if plan is not None and status in _NEEDS_ARTIFACTS:
        if "plan" not in args:
            wrong.append('plan is required: {"items": [...]}, the work items (see its schema)')
        else:
            items = plan(args["plan"])
            if isinstance(items, list):
                wrong.append(plan_refusal(items))
            else:
                checked_plan = {"items": [i.model_dump(mode="json") for i in items]}
    if status in _NEEDS_ARTIFACTS and isinstance(raw_artifacts, dict):
        missing = [p for p in produces if p not in raw_artifacts]
        empty = [p for p in produces if p in artifacts and not artifacts[p].strip()]
        if missing:
            wrong.append(f"missing required artifact(s): {', '.join(missing)}")
        if empty:
            wrong.append(f"empty artifact(s): {', '.join(empty)} (write the full text)")
    if wrong or not _is_status(status) or not isinstance(summary, str):
        return (
            "submit_result refused: "
            + "; ".join(wrong)
            + f". This stage must produce: {_names(produces)}. Fix this and call "
            "submit_result again."
        )
    return Submission(
        status=status,
        summary=summary,
        artifacts=artifacts,
        outputs=dict(outputs) if isinstance(outputs, dict) else {},
        plan=checked_plan,
    )
