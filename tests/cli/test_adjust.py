"""``stageflow adjust RUN ACTION``: every adjustment through the CLI, what the run then does,
and refusals (a cycle, an unknown agent, a stage that is not optional, a human's gate) with a
clear message and the exit code of their kind; nothing is recorded for a refused one."""

from __future__ import annotations

from tests.cli.harness import Cli, Script, of_type, stage


def test_adjustments_through_the_cli(cli: Cli) -> None:
    view = cli.run("feature_development")
    rid = view.run_id
    assert [w.stage for w in view.waiting] == ["architecture"]

    added = cli.ok(
        "adjust", rid, "add_stage", "--stage", "lint", "--agent", "reviewer",
        "--depends-on", "implementation", "--needs", "implementation.patch_summary",
        "--produces", "lint_report", "--before", "review", "--reason", "asked for", "--no-drive",
    )  # fmt: skip
    assert added.out.startswith(
        "recorded: cli added stage 'lint' (reviewer) after implementation, before review"
    )

    refusals = [
        (
            ("add_stage", "--stage", "loop", "--agent", "reviewer", "--depends-on", "testing",
             "--before", "implementation"),
            2,
            "makes a dependency cycle: implementation -> loop -> testing -> implementation",
        ),
        (
            ("add_stage", "--stage", "x", "--agent", "wizard"),
            3,
            "unknown agent 'wizard'; known: architect",
        ),
        (("add_stage", "--stage", "lint", "--agent", "tester"), 2, "stage 'lint' already exists"),
        (("skip_stage", "--stage", "testing"), 4, "stage 'testing' is not optional"),
        (("set_concurrency", "--max", "2"), 2, "give a number from 3 to 64 (got 2)"),
        (("escalate", "--stage", "architecture"), 4, "only a human decides it"),
        (("escalate", "--stage", "testing"), 4, "only a stage blocked by a false gate"),
    ]  # fmt: skip
    for argv, code, message in refusals:
        result = cli("adjust", rid, *argv, "--no-drive")
        assert result.code == code, (argv, result.code, result.err)
        assert message in result.err, (argv, result.err)
    assert len(of_type(cli.events(rid), "run_adjusted")) == 1  # refusals recorded nothing

    cli.ok("adjust", rid, "set_concurrency", "--max", "3", "--no-drive")
    done = cli.ok("approve", rid, "--stage", "architecture", "--json").view()
    assert stage(done, "lint").status == "succeeded"
    lint_at = next(
        e["seq"] for e in cli.events(rid) if e["type"] == "attempt_started" and e["stage"] == "lint"
    )
    review_at = next(
        e["seq"]
        for e in cli.events(rid)
        if e["type"] == "attempt_started" and e["stage"] == "review"
    )
    assert lint_at < review_at  # review waited for the added stage
    assert done.adjustments == [
        "cli added stage 'lint' (reviewer) after implementation, before review (asked for)",
        "cli set max_concurrent_agents to 3",
    ]
    human = cli.ok("status", rid).out
    assert "adjusted: cli set max_concurrent_agents to 3" in human
    audit = cli.ok("audit", rid, "--verify").out
    assert audit.count("run_adjusted") == 2 and "chain verified" in audit


def test_skipping_an_optional_stage_and_escalating_a_false_gate(cli: Cli, script: Script) -> None:
    cli.write_template(
        """\
        name: optional_docs
        description: a gated ship stage and optional docs
        stages:
          - {id: tests, agent: tester, produces: [test_report]}
          - {id: docs, agent: documenter, depends_on: [tests], produces: [docs_update],
             optional: true, gate: "tests.outputs.passed == true"}
          - {id: ship, agent: devops, depends_on: [tests], produces: [deploy_plan],
             gate: "tests.outputs.passed == true"}
        """
    )
    script({"tests": {"outputs": {"passed": False}}})
    view = cli.run("optional_docs")
    assert {w.stage for w in view.waiting} == {"docs", "ship"}
    skipped = cli("adjust", view.run_id, "skip_stage", "--stage", "docs", "--no-drive")
    assert skipped.code == 4 and "docs' is blocked; only a pending stage is skipped" in skipped.err
    view = cli.ok(
        "adjust", view.run_id, "escalate", "--stage", "ship", "--agent", "decision-maker", "--json"
    ).view()
    assert stage(view, "ship").status == "succeeded"  # the offline decision agent approved
    assert stage(view, "ship.decision1").agent == "decision-maker"
    assert [w.stage for w in view.waiting] == ["docs"]


def test_the_parser_offers_exactly_the_engines_actions() -> None:
    # the parser spells them out so that building it imports no engine module
    from stageflow.cli.main import ADJUST_ACTIONS
    from stageflow.engine.adjust import ACTIONS

    assert ADJUST_ACTIONS == ACTIONS


def test_unknown_and_ended_runs_are_refused(cli: Cli) -> None:
    unknown = cli("adjust", "r-nope", "set_concurrency", "--max", "5", "--no-drive")
    assert unknown.code == 3 and "unknown run 'r-nope'" in unknown.err
    view = cli.run("feature_development")
    cli.ok("cancel", view.run_id)
    ended = cli("adjust", view.run_id, "set_concurrency", "--max", "5", "--no-drive")
    assert ended.code == 4 and "has ended (cancelled); nothing to adjust" in ended.err
    flood = cli("adjust", view.run_id, "add_stage", "--stage", "x" * 100_000, "--no-drive")
    assert flood.code == 4 and len(flood.err) < 1000  # ended first; nothing echoed back
    assert of_type(cli.events(view.run_id), "run_adjusted") == []
