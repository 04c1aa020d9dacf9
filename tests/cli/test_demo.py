"""``stageflow demo``: feature_development end to end, offline, in a throwaway project."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stageflow.cli.main import main


def assert_offline_demo_completed(text: str) -> None:
    assert "OFFLINE" in text
    assert "no model is called" in text
    assert "run completed" in text
    final = text[text.index("final status") :]
    assert re.search(r"^run \S+\s+feature_development\s+\[completed\]", final, re.MULTILINE)
    assert re.search(r"audit: \d+ hash-chained events, chain verified", text)
    assert "[offline]" in text  # the artifacts say who wrote them


def test_demo_with_yes_approves_every_gate_and_verifies_the_chain() -> None:
    out = io.StringIO()

    code = main(["demo", "--yes", "--delay", "0"], out=out)

    text = out.getvalue()
    assert code == 0, text[-3000:]
    assert_offline_demo_completed(text)
    final = text[text.index("final status") :]
    for gate in ("architecture", "deployment"):  # both approval gates were passed
        assert re.search(rf"^\+\s+{gate}\s+succeeded", final, re.MULTILINE), gate
    assert "--- architecture/design v1" in text
    kept = re.search(r"^project: (\S+) \(temporary\)", text, re.MULTILINE)
    assert kept is not None
    assert not Path(kept.group(1)).exists()  # cleaned up without --keep


def test_demo_keep_leaves_the_project_with_its_state(tmp_path: Path) -> None:
    out = io.StringIO()

    code = main(["demo", "--yes", "--delay", "0", "--keep"], out=out)

    text = out.getvalue()
    assert code == 0, text[-3000:]
    kept = re.search(r"^project kept at (\S+)$", text, re.MULTILINE)
    assert kept is not None
    project = Path(kept.group(1))
    try:
        assert (project / ".stageflow" / "state.db").is_file()
        assert (project / ".stageflow" / "workflows" / "quick_change.yaml").is_file()
    finally:
        shutil.rmtree(project, ignore_errors=True)


@pytest.mark.slow
def test_demo_as_a_process_without_a_terminal_or_api_key_runs_offline(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANTHROPIC_API_KEY", "STAGEFLOW_RUNNER", "STAGEFLOW_OFFLINE_SCRIPT")
    }
    env["PATH"] = str(Path(sys.executable).parent)  # no `claude` CLI to fall back to either

    proc = subprocess.run(
        [sys.executable, "-m", "stageflow", "demo", "--delay", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_offline_demo_completed(proc.stdout)
    assert "(not a terminal: approving 'architecture' automatically)" in proc.stdout
    assert not (tmp_path / ".stageflow").exists()  # the demo never touches the cwd project
