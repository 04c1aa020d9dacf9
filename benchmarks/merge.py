"""What isolating parallel stages costs: N branches merged at one join against N sequential
commits, on real git repositories, with stageflow's own git functions.

- ``sequential``: N stages one after another in the run's worktree, one commit each
  (``commit_stage``), as a run without parallel writers does;
- ``lanes``: N parallel stages, each in a worktree and on a branch of its own forked from the
  run branch (``ensure_worktree``), one commit each, then the join: N ``--no-ff`` merges into
  the run branch (``merge_into_run``), in order.

Each stage writes one file of its own. Printed per N: the seconds of each side, the join's
merges alone, per branch, and the ratio lanes / sequential. Run:
``python benchmarks/merge.py [--sizes 2,8,32] [--reps 3] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stageflow.workspace.git import rev
from stageflow.workspace.joins import commit_stage, merge_into_run
from stageflow.workspace.worktree import ensure_worktree

RUN = "r-bench"
AT = 1_700_000_000.0


@dataclass
class Row:
    branches: int
    sequential_s: float
    lanes_s: float
    merges_s: float  # the join alone: N merges

    @property
    def ratio(self) -> float:
        return self.lanes_s / self.sequential_s if self.sequential_s else float("inf")


def _repo(root: Path) -> Path:
    top = root / "project"
    top.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "0"],
    ):
        subprocess.run(["git", *args], cwd=top, env=env, check=True, capture_output=True)
    return top


def _sequential(root: Path, n: int) -> float:
    top = _repo(root)
    trunk = root / "trunk"
    ensure_worktree(top, trunk, f"stageflow/{RUN}", "HEAD")
    start = time.perf_counter()
    for i in range(n):
        (trunk / f"stage{i}.txt").write_text(f"stage {i}\n")
        head = rev(trunk, "HEAD")
        commit_stage(trunk, run_id=RUN, stage=f"s{i}", attempt=1, summary=f"s{i}", head=head, at=AT)
    return time.perf_counter() - start


def _lanes(root: Path, n: int) -> tuple[float, float]:
    top = _repo(root)
    trunk = root / "trunk"
    ensure_worktree(top, trunk, f"stageflow/{RUN}", "HEAD")
    start = time.perf_counter()
    for i in range(n):
        where = root / f"lane{i}"
        ensure_worktree(top, where, f"stageflow/{RUN}--s{i}", f"stageflow/{RUN}")
        (where / f"stage{i}.txt").write_text(f"stage {i}\n")
        commit_stage(where, run_id=RUN, stage=f"s{i}", attempt=1, summary=f"s{i}", head=None, at=AT)
    joined = time.perf_counter()
    for i in range(n):
        done = merge_into_run(
            trunk,
            f"stageflow/{RUN}--s{i}",
            run_id=RUN,
            source=f"s{i}",
            attempt=1,
            join="join",
            head=rev(trunk, "HEAD"),
            at=AT,
        )
        assert done.outcome == "done", done.output
    end = time.perf_counter()
    return end - start, end - joined


def measure(sizes: list[int], reps: int) -> list[Row]:
    rows = []
    for n in sizes:
        seq, lanes, merges = [], [], []
        for _ in range(reps):
            with tempfile.TemporaryDirectory(prefix="stageflow-merge-bench-") as tmp:
                seq.append(_sequential(Path(tmp) / "a", n))
                total, join = _lanes(Path(tmp) / "b", n)
                lanes.append(total)
                merges.append(join)
        rows.append(
            Row(n, statistics.median(seq), statistics.median(lanes), statistics.median(merges))
        )
    return rows


def render(rows: list[Row]) -> str:
    lines = [
        f"{'branches':>8}  {'sequential s':>12}  {'lanes s':>8}  {'join merges s':>13}  "
        f"{'per merge ms':>12}  {'lanes/seq':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r.branches:>8}  {r.sequential_s:>12.3f}  {r.lanes_s:>8.3f}  {r.merges_s:>13.3f}  "
            f"{1000 * r.merges_s / r.branches:>12.1f}  {r.ratio:>9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,8,32")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure([int(x) for x in args.sizes.split(",")], args.reps)
    if args.json:
        sys.stdout.write(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows]) + "\n")
    else:
        sys.stdout.write(render(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
