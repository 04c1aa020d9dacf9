"""The offline runner: a deterministic, scripted stand-in for a model.

Used by ``stageflow demo``, the tests and the benchmark. It calls no model and says so: the
result's ``runner`` and ``model`` are ``"offline"``, every artifact starts with
``OFFLINE_MARKER``, and ``outputs["offline"]`` is true. Same request in, same result out.

Behaviour can be scripted per stage id (``StageScript``) in code, or for the CLI and
subprocess tests through ``STAGEFLOW_OFFLINE_SCRIPT`` = a JSON file ``{stage_id: {...}}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from stageflow.base import Model
from stageflow.engine.runner import AttemptRequest, AttemptResult, AttemptStatus
from stageflow.errors import BudgetExceeded, ModelError, Problem, SpecError
from stageflow.subagents.offline.docs import render_artifact, role_of, structured_outputs
from stageflow.subagents.offline.plans import offline_plan
from stageflow.subagents.offline.text import OFFLINE_MARKER, Dice, DocContext, one_line, seed_for
from stageflow.usage import Usage

__all__ = ["OFFLINE_MARKER", "SCRIPT_ENV", "OfflineRunner", "StageScript"]

log = logging.getLogger(__name__)

SCRIPT_ENV = "STAGEFLOW_OFFLINE_SCRIPT"

ScriptedError = Literal["model_retryable", "model_fatal", "budget"]


class StageScript(Model):
    """Overrides for one stage id.

    ``fail_times`` counts the attempts (1..n) that misbehave. By default they return status
    ``failed`` with ``fail_message``; with ``hang`` they sleep forever, with ``raise_error`` they
    raise. When ``hang`` or ``raise_error`` is set and ``fail_times`` is 0, every attempt
    misbehaves. ``status`` and ``outputs`` apply to the attempts that do not misbehave
    (``outputs`` is merged over the role's outputs); ``delay`` replaces the runner's delay.
    ``changes_times`` makes attempts 1..n request changes; ``plan`` replaces a plan stage's
    plan (the engine checks it like any runner's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_times: int = Field(0, ge=0)
    fail_message: str = "scripted failure (offline runner)"
    status: AttemptStatus | None = None
    outputs: dict[str, Any] | None = None
    delay: float | None = Field(None, ge=0)
    hang: bool = False
    raise_error: ScriptedError | None = None
    plan: Any = None  # a plan stage's plan, as handed to the engine (tests: a malformed one)
    changes_times: int = Field(0, ge=0)  # attempts 1..n request changes (a reviewer's rounds)

    def misbehaves(self, attempt: int) -> bool:
        """Whether this attempt number is one of the scripted bad ones."""
        if self.fail_times:
            return attempt <= self.fail_times
        return self.hang or self.raise_error is not None


_SCRIPT_ADAPTER = TypeAdapter(dict[str, StageScript])


def load_script(path: str | Path) -> dict[str, StageScript]:
    """Read a ``{stage_id: {...}}`` JSON script; raises ``SpecError`` naming the file."""
    file = Path(path)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        return _SCRIPT_ADAPTER.validate_python(raw)
    except OSError as exc:
        raise SpecError(Problem(f"cannot read offline script: {exc}", file=str(file))) from exc
    except json.JSONDecodeError as exc:
        raise SpecError(
            Problem(f"invalid JSON: {exc.msg}", file=str(file), line=exc.lineno)
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(
            Problem(f"invalid offline script: {first['msg']}", file=str(file), path=where)
        ) from exc


class OfflineRunner:
    """Produces plausible, role-shaped artifacts without calling any model."""

    name = "offline"

    def __init__(
        self, *, delay: float = 0.0, script: Mapping[str, StageScript] | None = None
    ) -> None:
        self.delay = delay
        self.script: dict[str, StageScript] = dict(script or {})

    @classmethod
    def from_env(cls, *, delay: float = 0.0) -> OfflineRunner:
        """A runner scripted by the JSON file named in ``STAGEFLOW_OFFLINE_SCRIPT``, if set."""
        path = os.environ.get(SCRIPT_ENV)
        if not path:
            return cls(delay=delay)
        log.info("offline runner scripted by %s", path)
        return cls(delay=delay, script=load_script(path))

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """Simulate one attempt: wait ``delay``, apply the script, write the artifacts."""
        script = self.script.get(request.stage.id, StageScript())
        delay = self.delay if script.delay is None else script.delay
        if delay > 0:
            await anyio.sleep(delay)
        input_tokens = _input_size(request) // 4
        if script.misbehaves(request.attempt):
            if script.hang:
                await anyio.sleep_forever()
            if script.raise_error is not None:
                _raise(script, request)
            return AttemptResult(
                status="failed",
                summary=f"[offline] {script.fail_message}",
                outputs={"offline": True},
                usage=Usage(input_tokens=input_tokens, output_tokens=8, requests=1),
                model="offline",
                runner=self.name,
                error=script.fail_message,
            )
        return self._succeed(request, script, input_tokens)

    def _succeed(
        self, request: AttemptRequest, script: StageScript, input_tokens: int
    ) -> AttemptResult:
        role = role_of(request.agent.name) if request.agent else "generic"
        dice = Dice(seed_for(request.task, request.stage.id, request.attempt))
        outputs = structured_outputs(role, dice)
        if script.outputs:
            outputs.update(script.outputs)
        outputs["offline"] = True
        ctx = DocContext(
            task=request.task,
            stage=request.stage.id,
            role=role,
            attempt=request.attempt,
            kind=request.kind,
            artifacts=request.artifacts,
            previous=request.previous,
            feedback=request.feedback,
            outputs=outputs,
        )
        artifacts: dict[str, str] = {}
        for name in request.stage.required_artifacts:  # the engine writes a plan stage's plan
            text = render_artifact(ctx, name)
            prev = next((p for p in request.previous if p.name == name), None)
            if prev is not None and prev.content == text:
                # a rework must never hand back the version it was asked to change
                text += f"\n_revision of v{prev.version}, attempt {request.attempt}_\n"
            artifacts[name] = text
        names = ", ".join(artifacts) or "no artifacts"
        summary = f"[offline] {role} wrote {names} for: {one_line(request.task, 60)}"
        if request.feedback:
            summary += " (reworked after review)"
        out_chars = sum(len(t) for t in artifacts.values()) + len(summary)
        plan = None
        if request.plan_limits is not None:
            plan = script.plan if script.plan is not None else offline_plan(request)
        status = script.status or "passed"
        if request.attempt <= script.changes_times:
            status = "changes_requested"
        return AttemptResult(
            status=status,
            summary=summary,
            artifacts=artifacts,
            outputs=outputs,
            usage=Usage(
                input_tokens=input_tokens, output_tokens=max(1, out_chars // 4), requests=1
            ),
            model="offline",
            runner=self.name,
            plan=plan,
        )


def _input_size(request: AttemptRequest) -> int:
    """Characters a real model would have read: prompt, task, inputs, artifacts, feedback."""
    size = len(request.task) + len(json.dumps(request.inputs, sort_keys=True, default=str))
    if request.agent is not None:
        size += len(request.agent.system_prompt)
    size += sum(len(a.content) for a in request.artifacts)
    size += sum(len(a.content) for a in request.previous)
    size += len(request.feedback or "")
    return max(size, 4)


def _raise(script: StageScript, request: AttemptRequest) -> None:
    message = f"[offline] {script.fail_message} (stage '{request.stage.id}')"
    if script.raise_error == "model_retryable":
        raise ModelError(message, retryable=True, status_code=529)
    if script.raise_error == "model_fatal":
        raise ModelError(message, retryable=False, status_code=400)
    budget = request.budget_remaining_usd or 0.0
    raise BudgetExceeded(message, spent_usd=budget + 0.01, budget_usd=budget)
