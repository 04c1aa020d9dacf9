"""The pure engine on plans: expansion, item sub-stages, files kept apart, the for_each stage's
status, and what the engine refuses (a plan a runner did not check, a plan that no longer fits
the budget). Logs are built by hand, folded and planned: no I/O."""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.plans import needed_refs
from stageflow.engine.state import fold
from stageflow.usage import Usage
from tests.engine.plan_kit import finish, item, plan_template, planned, settle
from tests.engine.pure import Log


def test_a_plan_expands_into_one_sub_stage_per_item_with_its_edges() -> None:
    log = Log(plan_template())
    started = planned(log, item("t1"), item("t2"), item("t3", "t1", "t2"))
    assert started == ["execute.t1", "execute.t2"]
    state = log.state
    assert list(state.stages) == [
        "plan",
        "execute",
        "execute.t1",
        "execute.t2",
        "execute.t3",
        "audit",
    ]
    assert state.children["execute"] == ("execute.t1", "execute.t2", "execute.t3")
    assert state.stages["execute"].status == "expanded"
    assert state.stage_spec("execute.t3").depends_on == ["execute.t1", "execute.t2"]
    assert [e.event.type for e in log.envs].count("plan_expanded") == 1
    finish(log, "execute.t1")
    assert settle(log) == []  # t3 waits for both
    finish(log, "execute.t2")
    assert [s.stage for s in settle(log)] == ["execute.t3"]
    assert log.state.stages["execute"].status == "expanded"
    finish(log, "execute.t3")
    assert [s.stage for s in settle(log)] == ["audit"]
    assert log.state.stages["execute"].status == "succeeded"
    assert log.state.stages["execute"].outputs["items"] == 3
    # the audit receives every item's summary; t3 received what t1 and t2 produced
    assert needed_refs(log.state, "audit") == [
        ("execute.t1", "summary"),
        ("execute.t2", "summary"),
        ("execute.t3", "summary"),
    ]
    assert needed_refs(log.state, "execute.t3") == [
        ("plan", "plan"),
        ("execute.t1", "summary"),
        ("execute.t2", "summary"),
    ]
    # a new process folding the same log sees exactly the same stages and specs
    assert fold(log.envs) == log.state


def test_items_with_overlapping_files_never_run_at_the_same_time() -> None:
    log = Log(plan_template())
    started = planned(
        log,
        item("t1", files=("src/a.py",)),
        item("t2", files=("src/",)),
        item("t3", files=("docs/x.md",)),
        item("t4", files=("src/*.py",)),
    )
    assert started == ["execute.t1", "execute.t3"]  # t2 and t4 touch what t1 touches
    finish(log, "execute.t1")
    assert [s.stage for s in settle(log)] == ["execute.t2"]  # t4 overlaps t2 in turn
    finish(log, "execute.t2")
    assert [s.stage for s in settle(log)] == ["execute.t4"]


def test_items_run_within_the_concurrency_limit() -> None:
    log = Log(plan_template())
    started = planned(log, *(item(f"t{n}") for n in range(1, 5)))
    assert started == ["execute.t1", "execute.t2", "execute.t3"]  # max_concurrent_agents 3


def test_a_plan_the_runner_did_not_check_is_refused_before_anything_runs() -> None:
    log = Log(plan_template())
    assert [s.stage for s in settle(log)] == ["plan"]
    # a runner that skipped the check (the driver checks too; this log was written without)
    finish(log, "plan", plan=[item("t1", "t2"), item("t2", "t1")])
    assert settle(log) == []
    st = log.state.stages["execute"]
    assert st.status == "failed"
    assert st.reason == "plan refused: dependency cycle: t1 -> t2 -> t1; items must form a DAG"
    assert not log.state.children
    assert log.state.ended == "failed"


def test_a_plan_that_no_longer_fits_the_budget_pauses_the_run_instead_of_expanding() -> None:
    log = Log(plan_template(budget_usd=1.0), budget=3.0)
    assert [s.stage for s in settle(log)] == ["plan"]
    finish(log, "plan", plan=[item("t1"), item("t2"), item("t3")], usage=Usage(cost_usd=0.5))
    assert settle(log) == []
    assert log.state.paused and log.state.budget_paused
    assert "need $3.00, but the run has $2.50 left" in (log.state.pause_reason or "")
    assert not log.state.children
    log.add(ev.RunResumed(budget_usd=5.0))
    assert [s.stage for s in settle(log)] == ["execute.t1", "execute.t2", "execute.t3"]


def test_a_skipped_plan_stage_skips_its_for_each_stage() -> None:
    spec = plan_template()
    spec["stages"][0]["when"] = "inputs.task == 'never'"
    log = Log(spec)
    assert settle(log) == []
    assert log.state.stages["execute"].status == "skipped"
    assert log.state.ended == "completed"


def test_a_failed_item_fails_the_run_and_retrying_the_for_each_stage_retries_it() -> None:
    log = Log(plan_template())
    planned(log, item("t1"), item("t2"))
    finish(log, "execute.t1")
    finish(log, "execute.t2", "failed", error="broken")
    settle(log)
    assert log.state.stages["execute.t2"].status == "failed"
    assert log.state.stages["execute"].status == "failed"
    assert log.state.ended == "failed"
    log.add(ev.StageRetryRequested(stage="execute"))
    assert log.state.stages["execute.t1"].status == "succeeded"  # not redone
    assert log.state.stages["execute.t2"].status == "pending"
    assert log.state.stages["execute"].status == "expanded"
    assert [s.stage for s in settle(log)] == ["execute.t2"]


def test_template_stages_that_declare_overlapping_files_take_turns() -> None:
    log = Log(
        {
            "name": "files",
            "stages": [
                {"id": "a", "agent": "developer", "files": ["src/app.py"]},
                {"id": "b", "agent": "developer", "files": ["src/"]},
                {"id": "c", "agent": "developer", "files": ["docs/"]},
            ],
        }
    )
    assert [s.stage for s in settle(log)] == ["a", "c"]
    finish(log, "a")
    assert [s.stage for s in settle(log)] == ["b"]
