"""CLI: read commands (status, templates, agents, audit), errors and exit codes, init."""

from __future__ import annotations

import io
import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from stageflow.cli.main import main
from stageflow.engine.views import RunView
from tests.cli.harness import PIPELINE, Cli, stage

# -- read commands -------------------------------------------------------------------------


def test_status_without_a_run_lists_the_runs(cli: Cli) -> None:
    empty = cli.ok("status")
    assert "no runs yet" in empty.out
    first = cli.run("feature_development", task="first task")
    second = cli.run("bugfix", task="second task")

    listed = cli.ok("status")
    as_json = cli.ok("status", "--json").json()

    assert first.run_id in listed.out
    assert second.run_id in listed.out
    by_id = {r["run_id"]: r for r in as_json}
    assert set(by_id) == {first.run_id, second.run_id}
    assert by_id[second.run_id]["template"] == "bugfix"
    assert by_id[first.run_id]["status"] == "waiting"


def test_status_json_is_the_run_view_model(cli: Cli) -> None:
    view = cli.run("feature_development")

    result = cli.ok("status", view.run_id, "--json")

    parsed = RunView.model_validate_json(result.out)
    assert parsed.run_id == view.run_id
    assert parsed.template == "feature_development"
    assert [s.id for s in parsed.stages] == [
        "architecture",
        "implementation",
        "testing",
        "review",
        "deployment",
    ]
    assert "offline" in parsed.runner
    assert parsed.waiting[0].review == ["design"]
    assert f"stageflow approve {view.run_id}" in parsed.next_action
    human = cli.ok("status", view.run_id).out
    assert f"run {view.run_id}" in human
    assert "waiting: architecture (approval, attempt 1)" in human


def test_templates_and_agents_json_list_the_built_in_catalog(cli: Cli) -> None:
    templates = cli.ok("templates", "--json").json()
    agents = cli.ok("agents", "--json").json()

    assert {t["name"] for t in templates["templates"]} == {
        "feature_development",
        "bugfix",
        "documentation_update",
        "security_audit",
        "feature_parallel",
        "plan_execute_audit",
        "simple_debate",
        "complex_debate",
        "consensus_building",
        "evolution_debate",
    }
    assert templates["errors"] == []
    assert all(t["problems"] == [] and t["stages"] for t in templates["templates"])
    assert (
        len(agents["agents"]) == 21
    )  # 16 stage agents (merge-resolver too), 4 debaters, moderator
    assert agents["errors"] == []
    assert {a["layer"] for a in agents["agents"]} == {"builtin"}
    names = {a["name"] for a in agents["agents"]}
    assert {"architect", "developer", "tester", "reviewer"} <= names
    assert {"coordinator", "auditor", "decision-maker"} <= names


def test_audit_verify_confirms_an_intact_chain(cli: Cli) -> None:
    view = cli.run("feature_development")

    result = cli("audit", view.run_id, "--verify")

    assert result.code == 0, result.err
    assert "chain verified" in result.out
    assert "run_created" in result.out


def test_audit_verify_names_the_entry_that_was_altered(cli: Cli) -> None:
    view = cli.run("feature_development")
    events = cli.events(view.run_id)
    target = next(e for e in events if e["type"] == "attempt_finished")
    db = sqlite3.connect(cli.project / ".stageflow" / "state.db")
    with db:
        (payload,) = db.execute(
            "SELECT payload FROM events WHERE run_id = ? AND seq = ?", (view.run_id, target["seq"])
        ).fetchone()
        forged = json.loads(payload)
        forged["summary"] = "nothing to see here"
        db.execute(
            "UPDATE events SET payload = ? WHERE run_id = ? AND seq = ?",
            (json.dumps(forged), view.run_id, target["seq"]),
        )
    db.close()

    result = cli("audit", view.run_id, "--verify")

    assert result.code == 1
    assert "chain verified" not in result.out
    assert f"CHAIN BROKEN: seq {target['seq']}: hash mismatch" in result.out


def test_audit_verify_reports_an_entry_whose_payload_no_longer_parses(cli: Cli) -> None:
    view = cli.run("bugfix")
    db = sqlite3.connect(cli.project / ".stageflow" / "state.db")
    with db:
        db.execute(
            "UPDATE events SET payload = '{\"stage\": ' WHERE run_id = ? AND seq = 2",
            (view.run_id,),
        )
    db.close()

    result = cli("audit", view.run_id, "--verify")

    assert result.code == 1
    assert "seq 2" in result.out + result.err
    status = cli("status", view.run_id)  # other commands say what is wrong, no traceback
    assert status.code == 1
    assert "event log entry seq 2 cannot be read" in status.err


# -- errors --------------------------------------------------------------------------------


def test_an_unknown_run_exits_3_and_lists_the_known_ones(cli: Cli) -> None:
    view = cli.run("bugfix")

    for argv in (
        ("status", "r-nope"),
        ("approve", "r-nope"),
        ("cancel", "r-nope"),
        ("audit", "r-nope"),
    ):
        result = cli(*argv)
        assert result.code == 3, argv
        assert "unknown run 'r-nope'" in result.err
        assert view.run_id in result.err


def test_an_unknown_template_exits_3_and_lists_the_known_names(cli: Cli) -> None:
    result = cli("run", "feature_dev", "--task", "x")

    assert result.code == 3
    assert "unknown template 'feature_dev'" in result.err
    assert "feature_development" in result.err
    assert "security_audit" in result.err
    assert cli.ok("status", "--json").json() == []  # nothing was recorded


def test_approving_when_nothing_waits_exits_4_and_names_the_state(cli: Cli) -> None:
    view = cli.run("feature_development")

    wrong_stage = cli("approve", view.run_id, "--stage", "implementation")
    assert wrong_stage.code == 4
    assert "'implementation' is not waiting" in wrong_stage.err
    assert "it is pending" in wrong_stage.err
    assert "waiting: architecture" in wrong_stage.err

    cli.ok("pause", view.run_id)
    assert cli("approve", view.run_id).code == 6  # recorded; the run stays paused
    nothing = cli("approve", view.run_id)
    assert nothing.code == 4
    assert "no stage waiting" in nothing.err
    assert "paused" in nothing.err


def test_reject_without_feedback_is_a_usage_error(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reject", "r-any", "--project", str(cli.project)], out=io.StringIO())

    assert exc.value.code == 2
    assert "--feedback" in capsys.readouterr().err
    blank = cli("reject", cli.run("feature_development").run_id, "--feedback", "  ")
    assert blank.code == 2
    assert "needs feedback" in blank.err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no_equals_sign", "--input expects NAME=VALUE"),
        ("=1", "--input expects NAME=VALUE"),
        ("colour=blue", "unknown input(s) colour"),
        ("min_coverage=lots", "input 'min_coverage' must be a number"),
    ],
)
def test_a_bad_input_exits_2_and_starts_nothing(cli: Cli, value: str, message: str) -> None:
    result = cli("run", "feature_parallel", "--task", "x", "--input", value)

    assert result.code == 2
    assert message in result.err
    assert cli.ok("status", "--json").json() == []


def test_validate_reports_each_problem_with_file_line_and_stage(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        textwrap.dedent(
            """\
            name: broken
            stages:
              - id: a
                agent: developer
                produces: [x]
              - id: b
                agent: nobody
                depends_on: [a, zzz]
                needs: [a.y]
            """
        ),
        encoding="utf-8",
    )

    result = cli("validate", str(broken))

    assert result.code == 1
    lines = result.out.splitlines()
    assert f"{broken}:7: stage 'b'" in lines[0]
    assert "unknown agent 'nobody'" in lines[0]
    assert any(ln.startswith(f"{broken}:8: stage 'b'") and "zzz" in ln for ln in lines)
    assert any(ln.startswith(f"{broken}:9: stage 'b'") and "a.y" in ln for ln in lines)
    assert lines[-1] == "3 problem(s) in 1 file(s)"
    as_json = cli("validate", str(broken), "--json").json()
    assert as_json["ok"] is False
    assert len(as_json["problems"]) == 3


def test_validate_accepts_a_good_template_and_the_built_in_ones(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(PIPELINE, encoding="utf-8")
    builtin = sorted(
        (Path(__file__).parents[2] / "stageflow" / "workflows" / "builtin").glob("*.yaml")
    )
    assert len(builtin) >= 5

    assert cli.ok("validate", str(good)).out.strip() == "ok: 1 file(s) valid"
    assert cli.ok("validate", *map(str, builtin)).out.strip() == f"ok: {len(builtin)} file(s) valid"


# -- init ----------------------------------------------------------------------------------


def test_init_creates_the_example_files_once(cli: Cli) -> None:
    first = cli.ok("init")

    base = cli.project / ".stageflow"
    expected = {
        base / "agents" / "changelog-writer.md",
        base / "workflows" / "quick_change.yaml",
        base / "knowledge" / "how-we-write-changes.md",
    }
    assert all(p.is_file() for p in expected)
    assert {f"created {p}" for p in expected} <= set(first.out.splitlines())
    edited = base / "workflows" / "quick_change.yaml"
    edited.write_text(edited.read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")

    second = cli.ok("init")

    assert "created" not in second.out
    assert "nothing changed" in second.out
    assert edited.read_text(encoding="utf-8").endswith("# mine\n")


def test_the_init_example_validates_and_runs_with_its_project_agent(cli: Cli) -> None:
    cli.ok("init")
    example = cli.project / ".stageflow" / "workflows" / "quick_change.yaml"
    assert cli.ok("validate", str(example)).out.strip() == "ok: 1 file(s) valid"
    agents = {a["name"]: a for a in cli.ok("agents", "--json").json()["agents"]}
    writer = agents["changelog-writer"]
    assert writer["layer"] == "project"
    assert writer["model"] == "haiku"

    view = cli.run("quick_change", task="Rename the export button")

    assert [w.stage for w in view.waiting] == ["changelog"]
    changelog = stage(view, "changelog")
    assert changelog.agent == "changelog-writer"
    assert (changelog.history[0].agent_hash or "").startswith(writer["hash"])
    assert [a.name for a in changelog.artifacts] == ["changelog_entry"]
    done, decided = cli.approve_until_done(view)
    assert done.status == "completed"
    assert decided == ["changelog"]
