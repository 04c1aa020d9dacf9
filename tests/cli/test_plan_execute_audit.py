"""``plan_execute_audit`` offline through the CLI: the offline coordinator's three-item plan
(two independent items, one after both), the items overlapping in time, the third only after
both, status showing the five stages and three sub-stages; the engine refusing a plan the
runner did not check; the feature_development review loop and its human escalation."""

from __future__ import annotations

import getpass
from typing import Any

from tests.cli.harness import Cli, Script, of_type, stage

TASK = "Add CSV export"


def spans(events: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """stage -> (seq of its first attempt_started, seq of its last attempt_finished)."""
    out: dict[str, tuple[int, int]] = {}
    for e in events:
        if e["type"] == "attempt_started" and e["stage"] not in out:
            out[e["stage"]] = (e["seq"], 10**9)
        elif e["type"] == "attempt_finished":
            out[e["stage"]] = (out[e["stage"]][0], e["seq"])
    return out


def test_offline_plan_execute_audit_expands_three_items_and_runs_two_in_parallel(
    cli: Cli, script: Script
) -> None:
    # the items take a moment, so "at the same time" is also true by the clock
    script({"execute.t1": {"delay": 0.3}, "execute.t2": {"delay": 0.3}})
    view = cli.run("plan_execute_audit", task=TASK)

    assert view.status == "waiting" and [w.stage for w in view.waiting] == ["approval"]
    top = [s.id for s in view.stages if s.parent is None]
    assert top == ["plan", "execute", "integrate", "audit", "approval"]
    assert stage(view, "execute").items == ["execute.t1", "execute.t2", "execute.t3"]
    assert [s.id for s in view.stages if s.parent == "execute"] == stage(view, "execute").items
    assert all(s.status == "succeeded" for s in view.stages if s.id != "approval")
    assert stage(view, "execute.t3").depends_on == ["execute.t1", "execute.t2"]
    assert stage(view, "execute.t1").title == f"Core logic for: {TASK}"

    events = cli.events(view.run_id)
    [expanded] = of_type(events, "plan_expanded")
    assert [i["id"] for i in expanded["items"]] == ["t1", "t2", "t3"]
    seen = spans(events)
    t1, t2, t3 = seen["execute.t1"], seen["execute.t2"], seen["execute.t3"]
    assert t1[0] < t2[1] and t2[0] < t1[1], (t1, t2)  # overlap in the log
    assert t3[0] > max(t1[1], t2[1])  # the third starts only after both finished
    started = [e for e in events if e["type"] == "attempt_started"]
    first_t2 = next(e for e in started if e["stage"] == "execute.t2")
    assert first_t2["seq"] == next(e for e in started if e["stage"] == "execute.t1")["seq"] + 1
    # by the clock too: both were running before either finished
    finished = {e["stage"]: e for e in events if e["type"] == "attempt_finished"}
    assert finished["execute.t1"]["duration_s"] >= 0.3

    human = cli.ok("status", view.run_id).out
    assert "succeeded (3 of 3 items)" in human
    assert "  - t1" in human and "  - t3" in human
    audit = cli.ok("audit", view.run_id).out
    assert "plan_expanded" in audit and '"stage": "execute", "source": "plan"' in audit
    plan_text = cli.ok("artifact", view.run_id, "plan", "plan").out
    assert "| t3 |" in plan_text and "t1, t2" in plan_text

    done = cli.ok("approve", view.run_id, "--stage", "approval", "--json").view()
    assert done.status == "completed"
    assert (
        cli.ok("audit", done.run_id, "--verify").out.splitlines()[-1].startswith("chain verified")
    )


def test_the_engine_refuses_a_plan_the_runner_did_not_check(cli: Cli, script: Script) -> None:
    cycle = {
        "items": [
            {"id": "a", "title": "A", "depends_on": ["b"]},
            {"id": "b", "title": "B", "depends_on": ["a"]},
        ]
    }
    script({"plan": {"plan": cycle}})
    view = cli.run("plan_execute_audit", task=TASK)
    plan = stage(view, "plan")
    assert view.status == "failed"
    assert plan.status == "failed" and plan.attempts == 2  # on_failure retry: 2 attempts
    assert plan.reason is not None and "dependency cycle: a -> b -> a" in plan.reason
    assert stage(view, "execute").items == []  # nothing was expanded, nothing ran
    events = cli.events(view.run_id)
    assert of_type(events, "plan_expanded") == []
    assert {e["stage"] for e in of_type(events, "attempt_started")} == {"plan"}


def test_too_many_items_are_refused_naming_the_limit(cli: Cli, script: Script) -> None:
    items = [{"id": f"t{n}", "title": f"item {n}"} for n in range(7)]
    script({"plan": {"plan": {"items": items}}})
    view = cli.run("plan_execute_audit", task=TASK)
    reason = stage(view, "plan").reason or ""
    assert "the plan has 7 items; this stage allows at most 6 (max_items)" in reason


def test_a_review_requesting_changes_reworks_the_implementation_then_a_human_decides(
    cli: Cli, script: Script
) -> None:
    script(
        {
            "review": {
                "changes_times": 3,
                "outputs": {"findings": ["the export ignores the delimiter"]},
            }
        }
    )
    view = cli.run("feature_development", task=TASK)
    view = cli.ok("approve", view.run_id, "--stage", "architecture", "--json").view()

    review = stage(view, "review")
    assert review.status == "blocked"
    assert review.escalation is not None and review.escalation.to == "human"
    assert "the export ignores the delimiter" in review.escalation.findings
    assert [(w.stage, w.kind) for w in view.waiting] == [("review", "escalation")]
    assert "after 2 rework round(s)" in view.waiting[0].what
    impl = stage(view, "implementation")
    assert impl.attempts == 3 and [a.kind for a in impl.history] == ["initial", "rework", "rework"]
    assert [a.kind for a in stage(view, "testing").history] == ["initial", "rerun", "rerun"]
    assert review.attempts == 3
    events = cli.events(view.run_id)
    reworks = of_type(events, "rework_requested")
    assert [(r["target"], r["round"]) for r in reworks] == [
        ("implementation", 1),
        ("implementation", 2),
    ]
    assert "the export ignores the delimiter" in reworks[0]["feedback"]["implementation"]
    [escalated] = of_type(events, "stage_escalated")
    assert (escalated["to"], escalated["kind"]) == ("human", "rework")

    # the human accepts the review's result as it is; the run goes on to deployment
    view = cli.ok("approve", view.run_id, "--stage", "review", "--json").view()
    assert stage(view, "review").status == "succeeded"
    assert stage(view, "deployment").status in ("blocked", "awaiting_approval")
    [decided] = of_type(cli.events(view.run_id), "escalation_decided")
    assert (decided["decision"], decided["approver"], decided["by_agent"]) == (
        "approve",
        getpass.getuser() or "cli",  # the CLI records the OS user
        False,
    )


def test_a_decision_on_an_escalation_binds_to_the_round_the_human_read(
    cli: Cli, script: Script
) -> None:
    script({"review": {"changes_times": 10, "outputs": {"findings": ["still wrong"]}}})
    view = cli.run("feature_development", task=TASK)
    view = cli.ok("approve", view.run_id, "--stage", "architecture", "--json").view()
    rid = view.run_id
    first = stage(view, "review").attempts
    assert [(w.stage, w.kind, w.attempt) for w in view.waiting] == [("review", "escalation", first)]
    # the human asks for one more round; the review asks for changes again and escalates again
    view = cli.ok(
        "reject", rid, "--stage", "review", "--attempt", str(first), "--feedback", "once more",
        "--json",
    ).view()  # fmt: skip
    now = stage(view, "review").attempts
    assert now > first and [(w.kind, w.attempt) for w in view.waiting] == [("escalation", now)]
    # a decision typed for the first escalation does not land on the second one
    stale = cli("approve", rid, "--stage", "review", "--attempt", str(first))
    assert stale.code == 4 and f"attempt {first} was replaced" in stale.err
    unbound = cli("approve", rid, "--stage", "review")
    assert unbound.code == 2 and "has been put up for approval 2 times" in unbound.err
    assert f"--attempt {now}" in cli.ok("status", rid).out
    done = cli.ok("approve", rid, "--stage", "review", "--attempt", str(now), "--json").view()
    assert stage(done, "review").status == "succeeded"
