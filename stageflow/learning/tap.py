"""Which logged events make a profile sample, and what the sample says.

``observe(envelope, state)`` is called for every entry of a run's log with the state right after
it (the updater folds the log itself, so the live path and a rebuild see exactly the same
states). An attempt becomes a sample once its verdict is final:

- ``attempt_finished`` passed (or changes requested) on a stage without approval: a success;
- ``approval_decided`` on the attempt that waited: a success when approved, a rework when sent
  back;
- ``attempt_finished`` failed, timed out or stopped at its budget: a failure.

Not counted: command stages, the offline runner (it calls no model), cancelled and interrupted
attempts, and failures that say nothing about the agent or model (the provider failing, or a
fatal error such as rejected credentials). The sample's model is the model id that was asked
for; its task type the one the choice recorded, else ``tasktype.task_type_of``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stageflow import events as ev
from stageflow.engine.state import AttemptInfo, RunState
from stageflow.learning.stats import FAILURE, REWORK, SUCCESS, sane, usable
from stageflow.learning.tasktype import task_type_of
from stageflow.store.profiles import SampleRow

__all__ = ["NOT_LEARNED_RUNNERS", "observe"]

NOT_LEARNED_RUNNERS = frozenset({"offline", "command"})
_DONE = ("passed", "changes_requested")
_FAILED = ("failed", "timed_out", "budget_exceeded")

log = logging.getLogger(__name__)

Resolve = Callable[[str | None], str]  # a model name as asked -> the model id


def _attempt(state: RunState, stage: str, number: int) -> AttemptInfo | None:
    for info in reversed(state.stages[stage].attempts):
        if info.number == number:
            return info
    return None


def _learned(state: RunState, info: AttemptInfo) -> bool:
    if not info.agent or info.finished_at is None:
        return False
    if info.runner in NOT_LEARNED_RUNNERS:
        return False
    # an attempt that raised has no runner of its own: the run's says which one it was
    return not (info.runner is None and state.runner.split(" ")[0] in NOT_LEARNED_RUNNERS)


def observe(env: ev.Envelope, state: RunState, resolve: Resolve) -> list[SampleRow]:
    """The samples ``env`` completes (usually none, at most one); an attempt whose figures
    cannot be reckoned with (a cost that is not a finite non-negative number) teaches
    nothing, and says so in the log."""
    found = _observe(env, state, resolve)
    kept = sane(found)
    if len(kept) < len(found):
        log.warning(
            "profiles: run %s entry %d: attempt figures unusable, not learned: %s",
            env.run_id,
            env.seq,
            [(s.stage, s.attempt, s.cost_usd, s.tokens) for s in found if not usable(s)],
        )
    return kept


def _observe(env: ev.Envelope, state: RunState, resolve: Resolve) -> list[SampleRow]:
    e = env.event
    if isinstance(e, ev.AttemptFinished):
        info = _attempt(state, e.stage, e.attempt)
        if info is None or not _learned(state, info):
            return []
        if e.outcome in _DONE:
            approval = state.stage_spec(e.stage).approval
            if approval is not None and approval.required:
                return []  # its verdict is the human's decision, later
            return [_sample(state, e.stage, info, SUCCESS, resolve)]
        if e.outcome in _FAILED and not e.fatal and not (e.outcome == "failed" and e.retryable):
            return [_sample(state, e.stage, info, FAILURE, resolve)]
        return []
    if isinstance(e, ev.ApprovalDecided):
        attempts = state.stages[e.stage].attempts
        info = attempts[-1] if attempts else None
        if info is None or info.outcome not in _DONE or not _learned(state, info):
            return []
        return [
            _sample(state, e.stage, info, SUCCESS if e.decision == "approve" else REWORK, resolve)
        ]
    return []


def _sample(
    state: RunState, stage: str, info: AttemptInfo, result: str, resolve: Resolve
) -> SampleRow:
    assert info.agent is not None and info.finished_at is not None
    choice = info.choice or {}
    recorded = choice.get("task_type")
    task_type = (
        recorded
        if isinstance(recorded, str) and recorded
        else task_type_of(
            state.spec,
            state.stage_spec(stage),
            info.agent,
            state.task,
            state.agents.get(info.agent),
        )
    )
    model_choice = choice.get("model")
    explored = isinstance(model_choice, dict) and model_choice.get("rule") == "explore"
    return SampleRow(
        run_id=state.run_id,
        stage=stage,
        attempt=info.number,
        template=state.template,
        agent=info.agent,
        task_type=task_type,
        model=info.model_resolved or resolve(info.model_requested),
        result=result,
        tokens=info.usage.total_tokens,
        cost_usd=info.usage.cost_usd,
        duration_s=round(max(0.0, info.finished_at - info.started_at), 3),
        at=info.finished_at,
        explored=explored,
    )
