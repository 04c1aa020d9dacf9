"""What the OS sandbox costs a Bash command: ``Workspace.bash`` with bubblewrap vs unconfined.

Both sides run the same commands in the same git worktree (the run's workspace), interleaved
(confined, unconfined, confined, ...) after one untimed warm-up each; the table shows medians
per command and the confined/unconfined ratio. The sandbox's cost is the bwrap start (the
namespaces, the mounts of its profile), paid once per command.

    python benchmarks/sandbox_overhead.py [--reps 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from stageflow.workspace.root import Workspace
from stageflow.workspace.sandbox import Sandbox, probe_bwrap
from stageflow.workspace.shell import BashPolicy
from stageflow.workspace.worktree import prepare_workspace

COMMANDS = ("true", "git status --short", f"{Path(sys.executable).name} -c pass")


def _project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "app.py").write_text("print('hi')\n")
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    return project


async def _time(ws: Workspace, command: str) -> float:
    t0 = time.perf_counter()
    out = await ws.bash(command)
    elapsed = time.perf_counter() - t0
    if not out.endswith("(exit code 0)"):
        raise RuntimeError(f"`{command}` failed: {out[-300:]}")
    return elapsed


async def measure(reps: int) -> list[dict[str, Any]]:
    """Median seconds per command, confined and unconfined."""
    with tempfile.TemporaryDirectory(prefix="stageflow-bench-") as tmp:
        project = _project(Path(tmp))
        root = prepare_workspace(project, "bench").root
        policy = BashPolicy(tuple(f"{c}*" for c in COMMANDS))
        confined = Workspace(root, bash=policy, sandbox=Sandbox())
        unconfined = Workspace(root, bash=policy, sandbox=Sandbox(mode="none"))
        rows = []
        for command in COMMANDS:
            await _time(confined, command)
            await _time(unconfined, command)
            inside: list[float] = []
            outside: list[float] = []
            for _ in range(reps):
                inside.append(await _time(confined, command))
                outside.append(await _time(unconfined, command))
            a, b = statistics.median(inside), statistics.median(outside)
            rows.append({"command": command, "confined_ms": a * 1e3, "unconfined_ms": b * 1e3})
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    path, problem = probe_bwrap("bwrap")
    if path is None:
        print(f"no sandbox to measure: {problem}", file=sys.stderr)
        return 1
    rows = anyio.run(measure, args.reps)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{path}, medians of {args.reps}")
    print(f"{'command':<22} {'confined ms':>12} {'unconfined ms':>14} {'ratio':>6}")
    for row in rows:
        ratio = row["confined_ms"] / row["unconfined_ms"]
        print(
            f"{row['command']:<22} {row['confined_ms']:>12.1f} {row['unconfined_ms']:>14.1f} "
            f"{ratio:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
