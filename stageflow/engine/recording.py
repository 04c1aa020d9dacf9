"""The ``attempt_finished`` record of an attempt, from what its runner handed back.

Pure apart from reading the attempt's meter: the required artifacts are enforced (the runner's
own check is not trusted), a plan stage's plan is checked again (``engine.plans``) and, when
valid, carried on the record with a ``plan`` artifact rendered from it; the usage comes from
the meter when the runner reported its requests there.
"""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.attempt_inputs import checked_artifacts, new_versions
from stageflow.engine.metering import attempt_usage
from stageflow.engine.planner import StartAttempt
from stageflow.engine.plans import checked_plan
from stageflow.engine.runner import AttemptMeter, AttemptResult
from stageflow.engine.state import RunState
from stageflow.store.rows import NewArtifact
from stageflow.usage import Usage
from stageflow.workflows.plan import render_plan
from stageflow.workflows.spec import PLAN_ARTIFACT


def finished_event(
    state: RunState,
    start: StartAttempt,
    outcome: ev.AttemptOutcome,
    result: AttemptResult | None,
    error: str | None,
    *,
    retryable: bool,
    fatal: bool,
    duration: float,
    meter: AttemptMeter | None,
) -> tuple[ev.AttemptFinished, list[NewArtifact]]:
    """The record and the artifact rows to commit for one attempt."""
    spec = state.stage_spec(start.stage)
    # the meter saw every request, also of an attempt that raised or was cancelled;
    # runners that report no requests (offline, command) hand their usage back instead
    usage = result.usage if result else Usage()
    cut_short = result is None and outcome in ("timed_out", "cancelled")
    if meter is not None and (meter.requests or meter.in_flight or (cut_short and meter.reserved)):
        # with the reservations of requests abandoned in flight, and of a runner cut short
        usage = attempt_usage(meter, cut_short=cut_short)
    artifacts = dict(result.artifacts) if result else {}
    plan: list[dict[str, object]] | None = None
    if spec.plan is not None:  # a plan stage's ``plan`` artifact is the engine's rendering only
        artifacts.pop(PLAN_ARTIFACT, None)
    if result is not None and outcome in ("passed", "changes_requested") and spec.plan:
        checked = checked_plan(state, start.stage, result.plan, also_spent=usage.cost_usd)
        if isinstance(checked, list):
            # a failure of the stage (its retry policy applies), not of the provider
            outcome, retryable = "failed", False
            error = "plan refused: " + "; ".join(checked)
        else:
            plan = [i.model_dump(mode="json") for i in checked]
            artifacts[PLAN_ARTIFACT] = render_plan(checked)
    if result is not None:
        kept = result.model_copy(update={"artifacts": artifacts})
        checked_outcome, error, artifacts = checked_artifacts(spec, outcome, kept, error)
        if checked_outcome != outcome:
            outcome, plan = checked_outcome, None  # a refused result expands nothing
    refs, new = new_versions(state.stages[start.stage], start, artifacts)
    answered = result.model if result else None
    if answered is None and meter is not None and meter.requests:
        answered = meter.requests[-1].model
    finished = ev.AttemptFinished(
        stage=start.stage,
        attempt=start.attempt,
        outcome=outcome,
        summary=result.summary if result else "",
        artifacts=refs,
        outputs=result.outputs if result else {},
        usage=usage,
        model=answered,
        model_requested=(result.model_requested if result else None)
        or (meter.requests[-1].model_requested if meter and meter.requests else None),
        context=meter.context if meter is not None else {},
        runner=result.runner if result else None,
        error=error,
        retryable=retryable,
        fatal=fatal,
        duration_s=round(duration, 6),
        plan=plan,
    )
    return finished, new
