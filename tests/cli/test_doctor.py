"""``stageflow doctor`` and the README's ``claude mcp add``, with the real Claude Code CLI.

Claude Code runs in an isolated home with a PATH that holds only Node, the system and the
pinned Claude Code (not ``.venv/bin``), as a user's Claude Code started from a desktop would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.server.test_claude_code import claude as installed_claude  # noqa: F401

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_add_command() -> str:
    (block,) = re.findall(r"```bash\n(claude mcp add .*?)\n```", README, flags=re.S)
    return block.strip()


@pytest.fixture
def machine(tmp_path: Path, installed_claude: Path) -> dict[str, str]:  # noqa: F811
    """The environment of a user's Claude Code: its own home, no virtualenv on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    path = os.pathsep.join([str(installed_claude.parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return {
        "HOME": str(home),
        "PATH": path,
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "STAGEFLOW_RUNNER": "offline",
        "STAGEFLOW_HOME": str(tmp_path / "stageflow-home"),
    }


def shell(command: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def doctor(project: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "stageflow", "doctor", "--json", "--project", str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == (0 if report["ok"] else 1), done.stderr
    return report


def checks(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


def test_the_readme_registration_connects_right_after_the_set_up(
    tmp_path: Path, machine: dict[str, str]
) -> None:
    venv_stageflow = Path(sys.executable).with_name("stageflow")
    assert venv_stageflow.is_file(), "the tests run from the README's virtualenv"
    # the README's command, typed in the stageflow folder (whose .venv is this interpreter's)
    command = readme_add_command().replace('"$PWD/.venv/bin/stageflow"', str(venv_stageflow))
    added = shell(command, cwd=ROOT, env=machine)
    assert added.returncode == 0, added.stderr
    project = tmp_path / "project"
    project.mkdir()
    listed = shell("claude mcp list", cwd=project, env=machine)
    assert re.search(r"stageflow: .*stageflow serve - ✔ Connected", listed.stdout), listed.stdout
    report = doctor(project, machine)
    assert checks(report)["claude code"]["status"] == "ok", report
    assert "Connected" in checks(report)["claude code"]["detail"]


def test_doctor_names_the_fix_for_a_bare_command_claude_code_cannot_find(
    tmp_path: Path, machine: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    # the old README form: `stageflow` is only in .venv/bin, which Claude Code's PATH lacks
    added = shell("claude mcp add stageflow -- stageflow serve", cwd=project, env=machine)
    assert added.returncode == 0, added.stderr
    listed = shell("claude mcp list", cwd=project, env=machine)
    assert "Failed to connect" in listed.stdout, listed.stdout
    report = doctor(project, machine)
    registration = checks(report)["claude code"]
    assert registration["status"] == "fail" and not report["ok"]
    venv_stageflow = str(Path(sys.executable).with_name("stageflow"))
    assert registration["fix"] == (
        "`stageflow` is not found where Claude Code starts it: claude mcp remove stageflow "
        f"--scope local, then claude mcp add --scope local stageflow -- {venv_stageflow} serve"
    )


def test_doctor_on_a_fresh_project_reports_every_check_and_what_to_do(
    tmp_path: Path, machine: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = {**machine, "STAGEFLOW_RUNNER": "auto", "PATH": "/usr/bin:/bin"}  # no claude, no key
    env.pop("ANTHROPIC_API_KEY", None)
    report = doctor(project, env)
    found = checks(report)
    assert list(found) == ["python", "stageflow", "database", "runner", "claude code", "git"]
    assert found["python"]["status"] == "ok"
    assert (
        found["database"]["status"] == "ok"
        and "created on first use" in found["database"]["detail"]
    )
    assert found["runner"]["status"] == "fail" and "ANTHROPIC_API_KEY" in found["runner"]["fix"]
    assert found["claude code"]["status"] == "warn"
    assert found["git"]["status"] == "warn" and "git init" in found["git"]["fix"]
    assert not report["ok"]
    text = subprocess.run(
        [sys.executable, "-m", "stageflow", "doctor", "--project", str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert text.returncode == 1
    assert "fail  runner" in text.stdout and "not ready" in text.stdout
    assert not (project / ".stageflow").exists()  # doctor changes nothing
