"""CLI: rework, skips, gates, retries, timeouts, rollback, cancel, pause and resume."""

from __future__ import annotations

import pytest

from tests.cli.harness import PIPELINE, Cli, Script, of_type, read_artifact, stage


def test_artifact_prints_the_latest_version_and_names_the_known_ones_on_a_typo(
    cli: Cli,
) -> None:
    view = cli.run("feature_development")
    latest = cli("artifact", view.run_id, "architecture", "design")
    assert latest.code == 0, latest.err
    assert latest.out.startswith("> [offline]")
    typo = cli("artifact", view.run_id, "architecture", "desgin")
    assert typo.code == 3
    assert "architecture/design" in typo.err


# -- rework, skips, gates ------------------------------------------------------------------


def test_reject_reruns_the_stage_as_rework_and_keeps_the_first_version(cli: Cli) -> None:
    view = cli.run("feature_development")
    assert [w.stage for w in view.waiting] == ["architecture"]
    feedback = "Use streaming writes; the report can have a million rows."

    result = cli("reject", view.run_id, "--stage", "architecture", "--feedback", feedback, "--json")

    assert result.code == 0, result.err
    arch = stage(result.view(), "architecture")
    assert arch.status == "awaiting_approval"
    assert arch.reworks == 1
    assert [(a.number, a.kind) for a in arch.history] == [(1, "initial"), (2, "rework")]
    assert arch.history[1].context["feedback_chars"] == len(feedback)
    assert [(a.name, a.version) for a in arch.artifacts] == [("design", 2)]
    refs = [
        ref
        for e in of_type(cli.events(view.run_id), "attempt_finished")
        if e["stage"] == "architecture"
        for ref in e["artifacts"]
    ]
    assert [r["version"] for r in refs] == [1, 2]
    v1 = read_artifact(cli, view.run_id, "architecture", "design", 1)
    v2 = read_artifact(cli, view.run_id, "architecture", "design", 2)
    assert v1 != v2
    assert feedback not in v1
    assert feedback in v2  # the rework saw the reviewer's words

    # two versions have been shown: an approval must say which one it is about
    vague = cli("approve", view.run_id)
    assert vague.code != 0 and "attempt=2" in vague.err
    stale = cli("approve", view.run_id, "--attempt", "1")
    assert stale.code == 4 and "attempt 1 was replaced" in stale.err, stale.err
    approved = cli("approve", view.run_id, "--attempt", "2", "--json")
    assert approved.code == 0, approved.err
    after = approved.view()
    assert stage(after, "architecture").status == "succeeded"
    assert stage(after, "implementation").attempts == 1


def test_when_false_skips_the_stage_and_stages_downstream_of_only_skipped_ones(cli: Cli) -> None:
    cli.write_template(
        """\
        name: optional_docs
        inputs:
          task: {type: string, required: true}
          with_docs: {type: boolean, default: false}
        stages:
          - id: code
            agent: developer
            produces: [patch_summary]
          - id: docs
            agent: documenter
            depends_on: [code]
            produces: [docs_update]
            when: inputs.with_docs == true
          - id: publish
            agent: release-manager
            depends_on: [docs]
            produces: [release_notes]
        """
    )
    skipped = cli.run("optional_docs")
    assert skipped.status == "completed"
    assert stage(skipped, "docs").status == "skipped"
    assert stage(skipped, "docs").attempts == 0
    assert "when false" in (stage(skipped, "docs").reason or "")
    assert stage(skipped, "publish").status == "skipped"
    assert stage(skipped, "code").status == "succeeded"

    taken = cli.run("optional_docs", "--input", "with_docs=true")
    assert taken.status == "completed"
    assert [stage(taken, s).status for s in ("docs", "publish")] == ["succeeded", "succeeded"]


GATED = """\
name: gated
stages:
  - id: check
    agent: tester
    produces: [test_report]
  - id: ship
    agent: devops
    depends_on: [check]
    produces: [deploy_plan]
    gate: check.outputs.passed == true
"""


def test_a_false_gate_blocks_until_a_human_approves_it(cli: Cli, script: Script) -> None:
    cli.write_template(GATED)
    script({"check": {"outputs": {"passed": False}}})

    view = cli.run("gated")

    assert view.status == "waiting"
    assert stage(view, "ship").status == "blocked"
    assert stage(view, "ship").attempts == 0
    assert [(w.stage, w.kind) for w in view.waiting] == [("ship", "gate")]
    result = cli("approve", view.run_id, "--comment", "known flaky test", "--json")
    assert result.code == 0, result.err
    after = result.view()
    assert after.status == "completed"
    assert stage(after, "ship").status == "succeeded"
    decided = of_type(cli.events(view.run_id), "gate_decided")
    assert [(e["stage"], e["decision"], e["feedback"]) for e in decided] == [
        ("ship", "approve", "known flaky test")
    ]


def test_rejecting_a_blocked_gate_fails_the_stage_and_the_run(cli: Cli, script: Script) -> None:
    cli.write_template(GATED)
    script({"check": {"outputs": {"passed": False}}})
    view = cli.run("gated")

    result = cli("reject", view.run_id, "--feedback", "tests must pass first", "--json")

    assert result.code == 1
    after = result.view()
    assert after.status == "failed"
    assert stage(after, "ship").status == "failed"
    assert stage(after, "ship").attempts == 0
    assert "gate rejected" in (after.reason or "")
    assert "tests must pass first" in (after.reason or "")


# -- failures: retry, timeout, rollback, retry command ---------------------------------------


def test_a_failed_attempt_is_retried_after_its_backoff(cli: Cli, script: Script) -> None:
    cli.write_template(PIPELINE)
    script({"build": {"fail_times": 1, "fail_message": "flaky network"}})

    view = cli.run("pipeline")

    build = stage(view, "build")
    assert build.status == "succeeded"
    assert [(a.kind, a.outcome) for a in build.history] == [
        ("initial", "failed"),
        ("retry", "passed"),
    ]
    assert "flaky network" in (build.history[0].error or "")
    events = cli.events(view.run_id)
    [retry] = of_type(events, "retry_scheduled")
    assert retry["stage"] == "build"
    assert retry["attempt"] == 2


def test_a_retry_waits_for_the_backoff_before_the_next_attempt(cli: Cli, script: Script) -> None:
    cli.write_template(PIPELINE.replace("backoff: 0", "backoff: 0.2s"))
    script({"build": {"fail_times": 1}})

    view = cli.run("pipeline")

    assert stage(view, "build").status == "succeeded"
    envs = cli.ok("audit", view.run_id, "--json").json()["events"]
    [retry] = [e for e in envs if e["event"]["type"] == "retry_scheduled"]
    assert retry["event"]["not_before"] == pytest.approx(retry["at"] + 0.2, abs=0.01)
    second = next(
        e for e in envs if e["event"]["type"] == "attempt_started" and e["event"]["attempt"] == 2
    )
    assert second["at"] >= retry["event"]["not_before"]


def test_a_hanging_attempt_times_out_and_the_retry_succeeds(cli: Cli, script: Script) -> None:
    cli.write_template(
        """\
        name: slow
        limits: {timeout: 20s}  # if stage timeouts broke, the run's own deadline ends the test
        stages:
          - id: crawl
            agent: investigator
            produces: [root_cause]
            timeout: 0.3
            on_failure: {retry: {max_attempts: 2, backoff: 0}}
        """
    )
    script({"crawl": {"fail_times": 1, "hang": True}})

    view = cli.run("slow")

    assert view.status == "completed"
    crawl = stage(view, "crawl")
    assert [a.outcome for a in crawl.history] == ["timed_out", "passed"]
    assert "timed out after 0.3s" in (crawl.history[0].error or "")
    assert (crawl.history[0].duration_s or 0) >= 0.3


ROLLBACK = """\
name: deploy
stages:
  - id: migrate
    agent: devops
    produces: [deploy_plan]
    on_failure: {rollback: undo}
  - id: announce
    agent: release-manager
    depends_on: [migrate]
    produces: [release_notes]
  - id: undo
    agent: devops
    produces: [revert_plan]
"""


def test_a_failed_stage_runs_its_rollback_stage_then_the_run_fails(
    cli: Cli, script: Script
) -> None:
    cli.write_template(ROLLBACK)
    script({"migrate": {"fail_times": 1, "fail_message": "schema lock"}})

    view = cli.run("deploy")

    assert view.status == "failed"
    assert stage(view, "undo").status == "succeeded"
    assert [a.name for a in stage(view, "undo").artifacts] == ["revert_plan"]
    assert stage(view, "announce").attempts == 0
    assert "schema lock" in (view.reason or "")
    assert "rollback 'undo' succeeded" in (view.reason or "")
    [started] = of_type(cli.events(view.run_id), "rollback_started")
    assert (started["failed_stage"], started["rollback_stage"]) == ("migrate", "undo")


def test_the_rollback_stage_never_runs_when_nothing_fails(cli: Cli) -> None:
    cli.write_template(ROLLBACK)

    view = cli.run("deploy")

    assert view.status == "completed"
    assert stage(view, "undo").attempts == 0
    assert stage(view, "announce").status == "succeeded"


def test_retry_command_reruns_the_failed_stage_and_finishes_the_run(
    cli: Cli, script: Script
) -> None:
    cli.write_template(
        """\
        name: once
        stages:
          - id: build
            agent: developer
            produces: [patch_summary]
          - id: check
            agent: tester
            depends_on: [build]
            produces: [test_report]
        """
    )
    script({"build": {"fail_times": 1, "fail_message": "disk full"}})
    view = cli.run("once")
    assert view.status == "failed"
    assert "disk full" in (view.reason or "")
    assert stage(view, "check").attempts == 0

    result = cli("retry", view.run_id, "--stage", "build", "--json")

    assert result.code == 0, result.err
    after = result.view()
    assert after.status == "completed"
    assert [a.outcome for a in stage(after, "build").history] == ["failed", "passed"]
    assert stage(after, "check").status == "succeeded"
    assert of_type(cli.events(view.run_id), "stage_retry_requested")[0]["stage"] == "build"
    again = cli("retry", view.run_id)
    assert again.code == 4
    assert "completed" in again.err


# -- cancel, pause, resume -----------------------------------------------------------------


def test_cancel_ends_the_run_with_the_reason(cli: Cli) -> None:
    view = cli.run("feature_development")

    result = cli("cancel", view.run_id, "--reason", "requirements changed")

    assert result.code == 0, result.err
    assert "reason: requirements changed" in result.out
    after = cli.status(view.run_id)
    assert after.status == "cancelled"
    assert after.reason == "requirements changed"
    assert after.waiting == []
    late = cli("approve", view.run_id)
    assert late.code == 4
    assert "cancelled" in late.err
    [cancelled] = of_type(cli.events(view.run_id), "run_cancelled")
    assert cancelled["reason"] == "requirements changed"


def test_an_approval_given_while_paused_is_recorded_and_work_waits_for_resume(
    cli: Cli,
) -> None:
    view = cli.run("feature_development")
    assert [w.stage for w in view.waiting] == ["architecture"]

    paused = cli("pause", view.run_id, "--reason", "lunch", "--json")
    assert paused.code == 0, paused.err
    assert paused.view().status == "paused"
    approved = cli("approve", view.run_id, "--json")

    assert approved.code == 6, approved.err  # recorded, and the run is still paused
    during = approved.view()
    assert during.status == "paused"
    assert during.reason == "lunch"
    assert stage(during, "architecture").status == "succeeded"  # the decision is kept...
    assert stage(during, "implementation").attempts == 0  # ...but nothing starts while paused
    twice = cli("pause", view.run_id)
    assert twice.code == 4
    assert "already paused" in twice.err

    resumed = cli("resume", view.run_id, "--json")

    assert resumed.code == 0, resumed.err
    after = resumed.view()
    assert after.status == "waiting"
    assert stage(after, "implementation").status == "succeeded"
    assert [w.stage for w in after.waiting] == ["deployment"]
    types = [e["type"] for e in cli.events(view.run_id)]
    assert types.index("run_paused") < types.index("approval_decided") < types.index("run_resumed")


def test_resume_of_a_run_that_is_not_paused_continues_it_without_an_event(cli: Cli) -> None:
    view = cli.run("feature_development")

    result = cli("resume", view.run_id, "--json")

    assert result.code == 0, result.err
    assert result.view().status == "waiting"
    assert "run_resumed" not in [e["type"] for e in cli.events(view.run_id)]
