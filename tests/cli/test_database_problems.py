"""A database that cannot be written, or is damaged, through the doors users use.

Read-only is a real read-only mount: the command runs under ``bwrap --ro-bind`` over the
project's ``.stageflow`` folder (as root, file permissions alone would not stop a write). A
damaged database is a truncated or overwritten file. Each case gives one clear message naming
the file and what to do, never a traceback, and ``serve`` exits non-zero.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.harness import Cli

pytestmark = pytest.mark.slow

READ_COMMANDS = [
    ("status",),
    ("status", "{run}"),
    ("status", "{run}", "--json"),
    ("audit", "{run}", "--verify"),
    ("knowledge", "search", "crash"),
    ("templates",),
    ("agents",),
    ("artifact", "{run}", "investigation", "root_cause"),
]


def _bwrap() -> str:
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail("bubblewrap is needed for this test: apt-get install -y bubblewrap")
    return found


def stageflow(
    project: Path, *argv: str, read_only: bool = False
) -> subprocess.CompletedProcess[str]:
    """``stageflow ARGV --project PROJECT`` as a subprocess; with ``read_only`` the project's
    ``.stageflow`` folder is mounted read-only for it."""
    command = [sys.executable, "-m", "stageflow", *argv, "--project", str(project)]
    if read_only:
        state = project / ".stageflow"
        command = [
            _bwrap(),
            "--bind", "/", "/",
            "--ro-bind", str(state), str(state),
            "--dev", "/dev",
            "--proc", "/proc",
            "--",
            *command,
        ]  # fmt: skip
    env = {**os.environ, "STAGEFLOW_RUNNER": "offline"}
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def project_with_a_run(tmp_path: Path, cli: Cli) -> tuple[Path, str]:
    subprocess.run(["git", "init", "-q", str(cli.project)], check=True)
    view = cli.run("bugfix", task="crash on an empty config file")
    assert view.status == "waiting"
    return cli.project, view.run_id


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=" ".join)
def test_read_commands_work_on_a_read_only_database(
    project_with_a_run: tuple[Path, str], argv: tuple[str, ...]
) -> None:
    project, run = project_with_a_run
    done = stageflow(project, *(a.format(run=run) for a in argv), read_only=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "readonly database" not in done.stderr
    if argv[0] == "status" and len(argv) > 1:
        assert run in done.stdout
    if "--json" in argv:
        assert json.loads(done.stdout)["status"] == "waiting"
    if argv[0] == "audit":
        assert "chain verified" in done.stdout


def test_a_write_on_a_read_only_database_says_what_is_wrong_and_changes_nothing(
    project_with_a_run: tuple[Path, str],
) -> None:
    project, run = project_with_a_run
    done = stageflow(project, "approve", run, read_only=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "is open read-only (it or its folder cannot be written)" in done.stderr
    after = stageflow(project, "status", run, "--json")
    assert json.loads(after.stdout)["status"] == "waiting"  # nothing was recorded


def _damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "truncated":
        db.write_bytes(data[: len(data) // 3])
    else:
        db.write_bytes(b"this is not a database\n" * 50)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize(
    "argv", [("status",), ("audit", "{run}", "--verify"), ("knowledge", "search", "x")]
)
def test_a_damaged_database_is_one_clear_message(
    project_with_a_run: tuple[Path, str], how: str, argv: tuple[str, ...]
) -> None:
    project, run = project_with_a_run
    db = project / ".stageflow" / "state.db"
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)
    _damage(db, how)
    done = stageflow(project, *(a.format(run=run) for a in argv))
    assert done.returncode == 1, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{db} is not a usable stageflow database" in lines[0]
    assert "restore it from a backup" in lines[0]


def test_serve_on_a_damaged_database_exits_non_zero_with_one_message(
    project_with_a_run: tuple[Path, str],
) -> None:
    project, _ = project_with_a_run
    db = project / ".stageflow" / "state.db"
    _damage(db, "garbage")
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    done = subprocess.run(
        [sys.executable, "-m", "stageflow", "serve", "--project", str(project)],
        input=json.dumps(init) + "\n",
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "STAGEFLOW_RUNNER": "offline"},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # nothing on the protocol channel
    assert "Traceback" not in done.stderr
    assert f"stageflow: {db} is not a usable stageflow database" in done.stderr
