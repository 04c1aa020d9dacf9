"""Hostile run-time adjustments against the pure check (``engine.adjust``): stages added with
absurd ids or texts, before stages that already ran, in cycles through a plan's items, skips
and escalations of finished stages, adjustments of an ended run. Each is refused with a clear
error; an accepted one is recorded exactly once and replays to the same state."""

from __future__ import annotations

from typing import Any

import pytest

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.adjust import MAX_CONCURRENCY, Adjustment, adjustment_events
from stageflow.engine.state import fold
from stageflow.errors import InvalidArgument, InvalidState, NotFound, StageflowError
from tests.engine.plan_kit import finish, item, plan_template, planned, settle
from tests.engine.pure import Log

AGENTS = ("developer", "reviewer", "decision-maker")


def lookup(name: str) -> AgentDefinition | None:
    if name not in AGENTS:
        return None
    return AgentDefinition(name=name, description=name, prompt=f"You are the {name}.")


def events(log: Log, **kw: Any) -> list[ev.Event]:
    return adjustment_events(
        log.state, Adjustment(**kw), by="attacker", agents=lookup, known_agents=AGENTS
    )


def refused(log: Log, kind: type[StageflowError], **kw: Any) -> str:
    with pytest.raises(kind) as info:
        events(log, **kw)
    text = str(info.value)
    assert len(text) < 2000, len(text)  # a clear error, not an echo of the attack
    return text


def expanded_log() -> Log:
    """plan_execute_audit's shape with t1 done, t2 running after it, the audit pending."""
    log = Log(plan_template())
    assert planned(log, item("t1"), item("t2", "t1")) == ["execute.t1"]
    finish(log, "execute.t1")
    assert [s.stage for s in settle(log)] == ["execute.t2"]
    return log


def test_ids_texts_and_artifact_names_are_bounded() -> None:
    log = expanded_log()
    base: dict[str, Any] = {"action": "add_stage", "agent": "reviewer", "depends_on": ["plan"]}
    for sid in ("x" * 10_000, "a.b", "execute.t9", "../x", "x\n", "1x", ""):
        text = refused(log, InvalidArgument, **base, stage=sid)
        assert "needs a stage" in text or "must start with a letter" in text, (sid, text)
    assert "at most 4000" in refused(
        log, InvalidArgument, **base, stage="lint", description="d" * 5000
    )
    assert "at most 500" in refused(log, InvalidArgument, **base, stage="lint", reason="r" * 600)
    assert "short identifiers" in refused(
        log, InvalidArgument, **base, stage="lint", produces=["ok", "bad name", "y" * 1000]
    )
    assert "at most 20 artifacts" in refused(
        log, InvalidArgument, **base, stage="lint", produces=[f"a{n}" for n in range(21)]
    )


def test_a_stage_cannot_go_before_a_stage_that_started_or_finished() -> None:
    log = expanded_log()
    for later in ("plan", "execute.t1", "execute.t2"):  # succeeded, succeeded, running
        text = refused(
            log, InvalidState, action="add_stage", stage="lint", agent="reviewer", before=[later]
        )
        assert f"stage '{later}' has already started" in text


def test_a_cycle_through_the_items_of_a_plan_is_refused() -> None:
    log = Log(plan_template())
    planned(log, item("t1"), item("t2", "t1"), item("t3", "t2"))
    # after t3, before t2: t2 -> new -> t3 -> t2
    text = refused(
        log,
        InvalidArgument,
        action="add_stage",
        stage="probe",
        agent="reviewer",
        depends_on=["execute.t3"],
        before=["execute.t2"],
    )
    assert "makes a dependency cycle: execute.t2 -> probe -> execute.t3 -> execute.t2" in text


def test_an_added_stage_after_an_item_waits_for_it_and_replays() -> None:
    log = expanded_log()
    [added] = events(
        log, action="add_stage", stage="probe", agent="reviewer", depends_on=["execute.t2"]
    )
    log.add(added)
    assert log.state.stages["probe"].status == "pending"
    assert [s.stage for s in settle(log)] == []  # t2 still runs
    finish(log, "execute.t2")
    assert "probe" in [s.stage for s in settle(log)]
    assert fold(log.envs) == log.state  # the adjustment replays to the same state


def test_finished_running_and_unknown_stages_are_not_skipped_or_escalated() -> None:
    log = expanded_log()
    [added] = events(log, action="add_stage", stage="later", agent="reviewer", depends_on=["audit"])
    log.add(added)
    for sid in ("plan", "execute.t1", "execute.t2"):
        assert "only a pending stage is skipped" in refused(
            log, InvalidState, action="skip_stage", stage=sid
        ) or "is not optional" in refused(log, InvalidState, action="skip_stage", stage=sid)
        assert "only a stage blocked by a false gate" in refused(
            log, InvalidState, action="escalate", stage=sid
        )
    text = refused(log, NotFound, action="skip_stage", stage="x" * 5000)
    assert "unknown stage" in text
    # the added stage is optional: it can be skipped while pending, once
    [skip] = events(log, action="skip_stage", stage="later")
    log.add(skip)
    assert "only a pending stage is skipped" in refused(
        log, InvalidState, action="skip_stage", stage="later"
    )


def test_the_concurrency_only_rises_within_bounds() -> None:
    log = expanded_log()
    for n in (None, -1, 0, 3, MAX_CONCURRENCY + 1, 10**9):
        text = refused(log, InvalidArgument, action="set_concurrency", max_concurrent_agents=n)
        assert f"give a number from 4 to {MAX_CONCURRENCY}" in text


def test_an_ended_run_is_not_adjusted() -> None:
    log = expanded_log()
    log.add(ev.RunCancelled(reason="stop", by="human"))
    for kw in (
        {"action": "set_concurrency", "max_concurrent_agents": 5},
        {"action": "add_stage", "stage": "lint", "agent": "reviewer"},
        {"action": "skip_stage", "stage": "audit"},
    ):
        assert "has ended (cancelled); nothing to adjust" in refused(log, InvalidState, **kw)


def test_an_item_cannot_take_the_id_of_its_stages_decision_agent() -> None:
    # a gated for_each stage escalates before it expands: its decision agent's stage is
    # execute.decision1, which an item 'decision1' would have shared (and never run)
    from stageflow.workflows.derived import RULING

    log = Log(plan_template(gate="plan.outputs.ok == true", escalate={"agent": "reviewer"}))
    assert [s.stage for s in settle(log)] == ["plan"]
    raw = [item("decision1"), item("t2")]
    finish(log, "plan", plan=raw, outputs={"ok": False})  # a runner that skipped the check
    assert [s.stage for s in settle(log)] == ["execute.decision1"]
    finish(log, "execute.decision1", outputs={RULING: "approve"})
    settle(log)
    execute = log.state.stages["execute"]
    assert execute.status == "failed" and "'decision1' is reserved" in (execute.reason or "")
    assert "execute.t2" not in log.state.stages  # nothing of the plan ran
    from stageflow.workflows.plan import PlanLimits, check_plan

    got = check_plan({"items": raw}, PlanLimits(max_items=4))
    assert isinstance(got, list) and "'decision1' is reserved" in got[0]
