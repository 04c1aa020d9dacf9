"""``stageflow status RUN --watch``: follows a run another process executes until it needs a
human. Plain lines in a pipe; on a terminal (a real pseudo-terminal) a coloured table that
redraws, and plain lines again with ``NO_COLOR``."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import anyio

from stageflow.store.store import Store

SLOW = """\
name: slow
description: a slow command, then a gate
stages:
  - id: wait
    run: python -c "import time; time.sleep(2); print('slept')"
    produces: [output]
  - id: sign
    agent: documenter
    depends_on: [wait]
    produces: [doc]
    approval: required
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "slow.yaml").write_text(SLOW, encoding="utf-8")
    return root


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEFLOW_")}
    env.update(STAGEFLOW_HOME=str(tmp_path / "home"), STAGEFLOW_RUNNER="offline", **extra)
    return env


def _stageflow(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "stageflow", *args, "--project", str(root)]


def _start(tmp_path: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    runner = subprocess.Popen(
        _stageflow(root, "run", "slow", "--task", "t"),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def run_id() -> str:
        with anyio.fail_after(30):
            while True:
                if (root / ".stageflow" / "state.db").exists():
                    async with await Store.open(root / ".stageflow" / "state.db") as store:
                        rows = await store.list_runs(limit=1)
                    if rows:
                        return rows[0].run_id
                await anyio.sleep(0.05)

    return runner, anyio.run(run_id)


def test_watch_in_a_pipe_prints_a_line_per_change_until_the_gate(tmp_path: Path) -> None:
    root = _project(tmp_path)
    runner, run_id = _start(tmp_path, root)
    try:
        watched = subprocess.run(  # noqa: PLW1510 (the code is asserted)
            _stageflow(root, "status", run_id, "--watch"),
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        runner.wait(60)
    assert watched.returncode == 0, watched.stderr
    lines = [ln for ln in watched.stdout.splitlines() if " [" in ln and "spent" in ln]
    assert any("wait=running" in ln for ln in lines), watched.stdout
    assert "sign=awaiting_approval" in lines[-1] and "[waiting]" in lines[-1]
    assert "\x1b[" not in watched.stdout  # no colour codes in a pipe
    assert "waiting: sign (approval, attempt 1)" in watched.stdout  # the full view at the end


def _on_a_terminal(argv: list[str], env: dict[str, str], limit: float = 60.0) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdout; its exit code and what it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(10), b"".join(chunks).decode("utf-8", errors="replace")


def test_watch_on_a_terminal_redraws_a_coloured_table(tmp_path: Path) -> None:
    root = _project(tmp_path)
    runner, run_id = _start(tmp_path, root)
    try:
        code, shown = _on_a_terminal(
            _stageflow(root, "status", run_id, "--watch"), _env(tmp_path, TERM="xterm-256color")
        )
    finally:
        runner.wait(60)
    assert code == 0
    assert "\x1b[" in shown  # colour and cursor movement
    assert f"run {run_id}" in shown and "awaiting_approval" in shown
    assert "elapsed" in shown and "spent $" in shown
    assert shown.count(f"run {run_id}") >= 2  # redrawn, not printed once


def test_no_color_on_a_terminal_keeps_plain_lines(tmp_path: Path) -> None:
    root = _project(tmp_path)
    runner, run_id = _start(tmp_path, root)
    try:
        code, shown = _on_a_terminal(
            _stageflow(root, "status", run_id, "--watch"), _env(tmp_path, NO_COLOR="1")
        )
    finally:
        runner.wait(60)
    assert code == 0
    assert "\x1b[" not in shown
    assert "sign=awaiting_approval" in shown
