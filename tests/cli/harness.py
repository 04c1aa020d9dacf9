"""Drive the ``stageflow`` command in-process the way a user types it (shared by the CLI tests).

Every test runs against its own project in ``tmp_path`` with the offline runner (no model is
called); ``STAGEFLOW_OFFLINE_SCRIPT`` scripts failures, hangs and outputs per stage id.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stageflow.cli.main import main
from stageflow.engine.views import RunView, StageView
from stageflow.subagents.offline.runner import SCRIPT_ENV


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
        assert result.code in (0, 1, 5, 6), (result.err, result.out[-2000:])
        view = result.view()
        assert result.code == exit_code(view.status, waited="--wait" in extra), result.err
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


def exit_code(status: str, *, waited: bool = False) -> int:
    """The documented exit code of a command that leaves a run in ``status``."""
    if status in ("failed", "cancelled"):  # run, approve, resume...: the commands that drive
        return 1
    if status == "paused":
        return 6
    return 5 if waited and status == "waiting" else 0


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


def read_artifact(cli: Cli, run_id: str, stage_id: str, name: str, version: int) -> str:
    result = cli("artifact", run_id, stage_id, name, "--version", str(version), "--json")
    assert result.code == 0, result.err
    body = result.json()
    assert (body["stage"], body["name"], body["version"]) == (stage_id, name, version)
    return str(body["content"])


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
