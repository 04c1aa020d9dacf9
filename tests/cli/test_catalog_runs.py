"""Every built-in template runs to completion offline through the CLI, approving each gate.

The template list comes from ``stageflow templates --json``, so a new built-in template is
covered without touching this file. ``security_audit`` also gets its conditional remediation and
its rollback path.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from stageflow.cli.main import main
from stageflow.workflows.loader import load_template_file
from tests.cli.harness import Cli, Script, of_type, scripter, stage

SAMPLE_VALUES: dict[str, Any] = {
    "string": "sample",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "list": [],
    "object": {},
}


def builtin_templates() -> list[dict[str, Any]]:
    """``stageflow templates --json`` in an empty project with an empty home."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ):
        for name in ("STAGEFLOW_DB", "STAGEFLOW_PROJECT"):
            os.environ.pop(name, None)
        os.environ["STAGEFLOW_HOME"] = str(Path(tmp) / "home")
        os.environ["STAGEFLOW_RUNNER"] = "offline"
        out = io.StringIO()
        code = main(["templates", "--json", "--project", str(Path(tmp) / "project")], out=out)
    assert code == 0
    data = json.loads(out.getvalue())
    assert data["errors"] == []
    templates: list[dict[str, Any]] = data["templates"]
    assert {t["layer"] for t in templates} == {"builtin"}
    return templates


TEMPLATES = builtin_templates()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "project", capsys)


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Script:
    return scripter(tmp_path, monkeypatch)


def required_inputs(template: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, spec in template["inputs"].items():
        if name != "task" and spec["required"] and spec["default"] is None:
            args += ["--input", f"{name}={json.dumps(SAMPLE_VALUES[spec['type']])}"]
    return args


def test_the_catalog_lists_at_least_the_five_shipped_templates() -> None:
    assert len(TEMPLATES) >= 5


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_every_builtin_template_completes_offline_when_each_gate_is_approved(
    cli: Cli, template: dict[str, Any]
) -> None:
    view = cli.run(template["name"], *required_inputs(template))

    done, decided = cli.approve_until_done(view)

    assert done.status == "completed", (done.reason, done.blockers)
    approvals = [s["id"] for s in template["stages"] if s["approval"]]
    assert set(approvals) <= set(decided)
    spec = load_template_file(Path(template["source"]), check=False)
    rollback_only = spec.rollback_targets()
    for s in spec.stages:
        got = stage(done, s.id)
        if s.id in rollback_only:
            assert got.attempts == 0, f"rollback stage {s.id} ran although nothing failed"
            continue
        assert got.status in ("succeeded", "skipped"), (s.id, got.status, got.reason)
        # a for_each stage's work is done by its items (sub-stages): each produces its outputs
        for done_by in [stage(done, i) for i in got.items] if s.for_each else [got]:
            if done_by.status == "succeeded":
                assert sorted(a.name for a in done_by.artifacts) == sorted(s.produces), s.id
                if s.agent:  # command stages (integrate, approval) have no model
                    assert done_by.model is not None and "offline" in done_by.model
    assert (
        cli.ok("audit", done.run_id, "--verify")
        .out.rstrip()
        .splitlines()[-1]
        .startswith("chain verified")
    )


def test_a_builtin_gate_that_blocks_is_decided_with_approve(cli: Cli, script: Script) -> None:
    script({"testing": {"outputs": {"passed": False}}})
    view = cli.run("bugfix")
    assert stage(view, "deployment").status == "blocked"
    assert [(w.stage, w.kind) for w in view.waiting] == [("deployment", "gate")]

    done, decided = cli.approve_until_done(view)

    assert done.status == "completed"
    assert decided == ["deployment", "deployment"]  # the gate, then the deployment approval
    assert stage(done, "deployment").attempts == 1


# -- security_audit ------------------------------------------------------------------------

SECURITY_AUDIT = next(Path(t["source"]) for t in TEMPLATES if t["name"] == "security_audit")


def fast_security_audit(cli: Cli) -> None:
    """The built-in security_audit, copied to the project layer with its 1m backoff at 0."""
    text = SECURITY_AUDIT.read_text(encoding="utf-8")
    assert "backoff: 1m" in text
    cli.write_template(text.replace("backoff: 1m", "backoff: 0"))


def test_security_audit_skips_remediation_and_verification_when_nothing_was_found(
    cli: Cli, script: Script
) -> None:
    script({"analysis": {"outputs": {"findings": 0}}, "pentesting": {"outputs": {"findings": 0}}})

    view = cli.run("security_audit")

    assert view.status == "completed"
    remediation = stage(view, "remediation")
    assert remediation.status == "skipped"
    assert remediation.attempts == 0
    assert "when false" in (remediation.reason or "")
    assert stage(view, "verification").status == "skipped"
    assert stage(view, "revert_remediation").attempts == 0
    assert view.waiting == []  # the only approval belongs to the skipped stage


def test_security_audit_remediates_when_only_pentesting_found_something(
    cli: Cli, script: Script
) -> None:
    script({"analysis": {"outputs": {"findings": 0}}, "pentesting": {"outputs": {"findings": 1}}})

    view = cli.run("security_audit")

    assert [w.stage for w in view.waiting] == ["remediation"]
    done, _ = cli.approve_until_done(view)
    assert done.status == "completed"
    assert stage(done, "verification").status == "succeeded"
    assert stage(done, "revert_remediation").attempts == 0


def test_security_audit_rolls_back_a_remediation_that_keeps_failing(
    cli: Cli, script: Script
) -> None:
    fast_security_audit(cli)
    script({"remediation": {"fail_times": 3, "fail_message": "patch does not apply"}})

    view = cli.run("security_audit")

    assert view.status == "failed"
    remediation = stage(view, "remediation")
    assert remediation.status == "failed"
    assert [a.outcome for a in remediation.history] == ["failed", "failed"]  # max_attempts 2
    revert = stage(view, "revert_remediation")
    assert revert.status == "succeeded"
    assert [a.name for a in revert.artifacts] == ["revert_plan"]
    assert stage(view, "verification").attempts == 0
    assert "remediation" in (view.reason or "")
    assert "rollback 'revert_remediation' succeeded" in (view.reason or "")
    [rollback] = of_type(cli.events(view.run_id), "rollback_started")
    assert rollback["rollback_stage"] == "revert_remediation"
