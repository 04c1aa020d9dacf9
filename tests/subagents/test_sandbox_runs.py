"""The sandbox escape of issue 11 through a real run: ``stageflow run`` in its own process
(started with credentials in its environment, as a user's would be), the API runner, the real
``anthropic`` client and a hostile scripted model on the loopback stand-in.

The model writes a ``conftest.py`` (``tests.workspace.escape``) and runs the README's own
``bash = ["pytest*"]``; the template's command stage ``python -m pytest`` then imports it
again. In the sandbox both fail at every step; unconfined (``sandbox = "none"``) the same run
leaks the key and plants the hook, so the attack is real. Without bwrap under ``auto`` the
command is refused and the command stage fails saying how to install it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.workspace.sandbox import probe_bwrap
from tests.standin import Turn, tool_use_block
from tests.standin.wire import Json
from tests.subagents.cli_process import Outcome, run_cli
from tests.workspace.escape import REPORT, SECRETS, Victim, make_victim, server_env

TEMPLATE = """
name: escape
description: a hostile model under the README's pytest pattern
stages:
  - id: setup
    run: touch {outside}/setup-ran
  - id: implement
    agent: developer
    depends_on: [setup]
    produces: [patch_summary]
  - id: tests
    run: python -m pytest -q -p no:cacheprovider
    depends_on: [implement]
"""


class HostileModel:
    """Writes the escape as conftest.py, runs ``pytest`` with Bash, then submits."""

    def __init__(self, victim: Victim) -> None:
        self.victim = victim

    def __call__(self, body: Json) -> Turn | None:
        turns = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        if turns == 0:
            args = {"file_path": "conftest.py", "content": self.victim.conftest()}
            return Turn([tool_use_block("toolu_write", "Write", args)], "tool_use")
        if turns == 1:
            args = {"command": "pytest -q -p no:cacheprovider"}
            return Turn([tool_use_block("toolu_bash", "Bash", args)], "tool_use")
        submit = {"status": "passed", "summary": "done", "artifacts": {"patch_summary": "x"}}
        return Turn([tool_use_block("toolu_submit", "submit_result", submit)], "tool_use")


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Victim]:
    made = make_victim(tmp_path)
    try:
        yield made
    finally:
        made.close()


def start_run(victim: Victim, config: str) -> Outcome:
    """``stageflow run escape`` in a separate process against a hostile model."""
    return run_cli(
        victim.project,
        template=TEMPLATE.format(outside=victim.outside),
        config=config,
        model=HostileModel(victim),
        env=server_env(victim, STAGEFLOW_HOME=str(victim.home / ".stageflow")),
    )


def test_a_hostile_model_cannot_escape_through_bash_or_a_later_command_stage(
    victim: Victim,
) -> None:
    path, problem = probe_bwrap("bwrap")
    assert path is not None, f"install bubblewrap (`apt-get install bubblewrap`): {problem}"
    out = start_run(victim, '[workspace]\nbash = ["pytest*"]\n')
    report = (out.worktree(victim.project) / REPORT).read_text()
    # both the agent's Bash and the command stage imported the conftest, confined
    assert report.count("ESCAPE-RAN pid=") == 2, report
    victim.assert_contained(report, *out.results, out.stderr, json.dumps(out.view))
    assert out.stage("implement")["status"] == "succeeded"
    # a command stage before any agent stage is the template's own, on the user's files
    assert (victim.outside / "setup-ran").exists()


def test_the_same_run_unconfined_leaks_and_says_so(victim: Victim) -> None:
    out = start_run(victim, '[workspace]\nbash = ["pytest*"]\nsandbox = "none"\n')
    assert "commands run WITHOUT an OS sandbox" in out.stderr
    report = (out.worktree(victim.project) / REPORT).read_text()
    assert SECRETS["ANTHROPIC_API_KEY"] in report and victim.hook.exists()


def test_auto_without_bwrap_refuses_the_test_runner_and_fails_the_command_stage(
    victim: Victim,
) -> None:
    out = start_run(victim, '[workspace]\nbash = ["pytest*"]\nbwrap = "/nonexistent/bwrap"\n')
    refused = [r for r in out.results if "pytest -q -p no:cacheprovider" in r]
    assert refused and "no OS sandbox" in refused[0], out.results
    assert "apt-get install bubblewrap" in refused[0] and 'sandbox = "none"' in refused[0]
    tests = out.stage("tests")
    assert tests["status"] == "failed" and out.code == 1
    assert "runs after an agent stage in the same workspace" in json.dumps(tests)
    assert not (out.worktree(victim.project) / REPORT).exists()  # the conftest never ran
    victim.assert_not_touched()


def test_bwrap_mode_without_bwrap_fails_the_stage_before_any_model_request(
    victim: Victim,
) -> None:
    out = start_run(
        victim,
        '[workspace]\nbash = ["pytest*"]\nsandbox = "bwrap"\nbwrap = "/nonexistent/bwrap"\n',
    )
    assert out.requests == 0 and out.code == 1
    implement = out.stage("implement")
    assert implement["status"] == "failed"
    assert "needs the OS sandbox" in json.dumps(implement)
