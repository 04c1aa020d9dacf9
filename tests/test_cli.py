"""The ``stageflow`` command, driven in-process the way a user types it.

Every test runs against its own project in ``tmp_path`` with the offline runner (no model is
called); ``STAGEFLOW_OFFLINE_SCRIPT`` scripts failures, hangs and outputs per stage id. ``Cli``
is shared with the other ``test_cli_*`` modules.
"""

from __future__ import annotations

import io
import json
import sqlite3
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stageflow.cli import main
from stageflow.engine.views import RunView, StageView
from stageflow.subagents.offline import SCRIPT_ENV


@dataclass(frozen=True)
class Outcome:
    """What one command did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def view(self) -> RunView:
        return RunView.model_validate_json(self.out)


class Cli:
    """``stageflow ... --project <project>`` in-process, with stdout and stderr captured."""

    def __init__(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.project = project
        self.capsys = capsys

    def __call__(self, *argv: str) -> Outcome:
        self.capsys.readouterr()  # forget anything written before this command
        out = io.StringIO()
        code = main([*argv, "--project", str(self.project)], out=out)
        return Outcome(code, out.getvalue(), self.capsys.readouterr().err)

    def ok(self, *argv: str) -> Outcome:
        result = self(*argv)
        assert result.code == 0, (argv, result.err, result.out[-2000:])
        return result

    def run(self, template: str, *extra: str, task: str = "Add CSV export") -> RunView:
        """``run TEMPLATE --task ... --json``; the run may end failed (exit 1) but not error."""
        result = self("run", template, "--task", task, "--json", *extra)
        assert result.code in (0, 1), (result.err, result.out[-2000:])
        view = result.view()
        assert result.code == (1 if view.status == "failed" else 0)
        return view

    def status(self, run_id: str) -> RunView:
        result = self("status", run_id, "--json")
        assert result.code in (0, 1), result.err
        return result.view()

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's event payloads, in order (``audit --json``)."""
        data = self.ok("audit", run_id, "--json").json()
        return [dict(e["event"], seq=e["seq"]) for e in data["events"]]

    def approve_until_done(self, view: RunView, *, limit: int = 20) -> tuple[RunView, list[str]]:
        """Approve whatever waits (approvals and blocked gates) until the run ends."""
        decided: list[str] = []
        for _ in range(limit):
            # a foreground command returns only once the run needs a human or has ended
            assert view.status in ("waiting", "completed", "failed", "cancelled"), view.status
            if view.status != "waiting":
                return view, decided
            stage = view.waiting[0].stage
            decided.append(stage)
            result = self("approve", view.run_id, "--stage", stage, "--json")
            assert result.code in (0, 1), result.err
            view = result.view()
        raise AssertionError(f"run {view.run_id} still waiting after {limit} approvals")

    def write_template(self, text: str) -> Path:
        """A project-layer template (``.stageflow/workflows/<name>.yaml``)."""
        text = textwrap.dedent(text)
        name = next(
            ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("name:")
        )
        path = self.project / ".stageflow" / "workflows" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


def stage(view: RunView, stage_id: str) -> StageView:
    return next(s for s in view.stages if s.id == stage_id)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


Script = Callable[[dict[str, dict[str, Any]]], None]


def scripter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Script:
    """``script({stage: {...}})`` scripts the offline runner for the following commands."""

    def set_script(stages: dict[str, dict[str, Any]]) -> None:
        path = tmp_path / "offline-script.json"
        path.write_text(json.dumps(stages), encoding="utf-8")
        monkeypatch.setenv(SCRIPT_ENV, str(path))

    return set_script


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "project", capsys)


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Script:
    return scripter(tmp_path, monkeypatch)


def read_artifact(cli: Cli, run_id: str, stage_id: str, name: str, version: int) -> str:
    result = cli("artifact", run_id, stage_id, name, "--version", str(version), "--json")
    assert result.code == 0, result.err
    body = result.json()
    assert (body["stage"], body["name"], body["version"]) == (stage_id, name, version)
    return str(body["content"])


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


PIPELINE = """\
name: pipeline
description: two stages, the second one behind an approval
stages:
  - id: build
    agent: developer
    produces: [patch_summary]
    on_failure: {retry: {max_attempts: 3, backoff: 0}}
  - id: check
    agent: tester
    depends_on: [build]
    needs: [build.patch_summary]
    produces: [test_report]
    approval: required
"""

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

    approved = cli("approve", view.run_id, "--json")
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

    assert approved.code == 0, approved.err
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
    assert "waiting: architecture (approval)" in human


def test_templates_and_agents_json_list_the_built_in_catalog(cli: Cli) -> None:
    templates = cli.ok("templates", "--json").json()
    agents = cli.ok("agents", "--json").json()

    assert {t["name"] for t in templates["templates"]} == {
        "feature_development",
        "bugfix",
        "documentation_update",
        "security_audit",
        "feature_parallel",
    }
    assert templates["errors"] == []
    assert all(t["problems"] == [] and t["stages"] for t in templates["templates"])
    assert len(agents["agents"]) == 12
    assert agents["errors"] == []
    assert {a["layer"] for a in agents["agents"]} == {"builtin"}
    assert {"architect", "developer", "tester", "reviewer"} <= {a["name"] for a in agents["agents"]}


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
    cli.ok("approve", view.run_id)
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
        (Path(__file__).parents[1] / "stageflow" / "workflows" / "builtin").glob("*.yaml")
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
