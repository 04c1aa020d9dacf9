"""Run-time decomposition: ``plan_execute_audit`` against ``feature_development`` on one task.

Both runs use the production path: ``stageflow run TEMPLATE --task ...`` with
``STAGEFLOW_RUNNER=anthropic`` and the real ``anthropic`` client against the loopback Messages
API stand-in (``tests/standin``: deterministic token counts, prompt caching, a scripted agent
that globs, reads, writes and submits; its coordinator plans ``--parallel`` independent items
and one that builds on them), in a temporary git project, approving each gate (``stageflow
approve``) until the run ends. Each message request waits ``--latency`` seconds before the
stand-in answers (a model's time), so parallel items show in the wall time.

Reported per template, in one run side by side:

- ``peak in/req``: the largest prompt (input + cache read + cache write tokens) of any request;
- ``prompt tok``: prompt tokens over every request, and the number of requests;
- ``wall s``: from the run's first event to its last, minus the time it waited for a human
  (approval gates), read from the run's own event log;
- ``chain s``: the longest chain of the run's DAG (its planned items included), each stage
  weighted by the time its attempts took;
- ``ratio``: wall / chain, the critical-path ratio. It cannot go below 1.0; above it is the
  engine's own time plus any stage that waited for a slot or for files another item held.

Run: ``python benchmarks/decomposition.py`` (``--latency 0.2``, ``--parallel 2``, ``--json``,
``--keep``). Needs nothing beyond the dev install (no network: the API is the stand-in).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the stand-in lives in the test tree
    sys.path.insert(0, str(ROOT))

from tests.standin import AgentConfig, StageAgent, StandIn  # noqa: E402
from tests.standin.agent import plan_items  # noqa: E402
from tests.standin.project import TASK, make_project  # noqa: E402
from tests.standin.wire import Json  # noqa: E402

TEMPLATES = ("plan_execute_audit", "feature_development")
CLI_TIMEOUT = 600.0


@dataclass
class Figures:
    template: str
    status: str
    requests: int
    prompt_tokens: int
    peak_prompt_tokens: int  # the largest single request
    wall_s: float  # first to last event, minus time waiting for a human
    chain_s: float  # the longest chain, stages weighted by their attempts' time
    stages: int  # stages and planned items that ran

    @property
    def ratio(self) -> float:
        return self.wall_s / self.chain_s if self.chain_s else 0.0


def _cli(args: list[str], env: dict[str, str], project: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "stageflow", *args, "--project", str(project), "--json"]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(f"`stageflow {' '.join(args)}` exited {done.returncode}: {done.stderr}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def wall_seconds(events: Sequence[dict[str, Any]]) -> float:
    """First event to last, minus each wait at a human gate (attempt done -> decision)."""
    waited = 0.0
    waiting_since: dict[str, float] = {}  # stage -> when it may have started to wait
    decided = ("approval_decided", "gate_decided", "escalation_decided")
    for env in events:
        e = env["event"]
        if e["type"] in ("attempt_finished", "gate_blocked") or (
            e["type"] == "stage_escalated" and e["to"] == "human"
        ):
            waiting_since[e["stage"]] = env["at"]
        elif e["type"] in decided and e["stage"] in waiting_since and not e.get("by_agent"):
            waited += env["at"] - waiting_since.pop(e["stage"])
    return events[-1]["at"] - events[0]["at"] - waited


def longest_chain(view: dict[str, Any]) -> float:
    """The longest path through the run's stages, each weighted by its attempts' time; an
    item waits for its parent's dependencies, and a stage after a for_each stage for its items."""
    stages = {s["id"]: s for s in view["stages"]}
    finish: dict[str, float] = {}

    def deps(s: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for d in s["depends_on"]:
            out += stages[d]["items"] or [d]
        if s.get("parent"):
            out += deps(stages[s["parent"]])
        return out

    for sid, s in stages.items():  # status lists stages in an order that respects their edges
        if s["items"]:
            continue
        finish[sid] = s["duration_s"] + max((finish.get(d, 0.0) for d in deps(s)), default=0.0)
    return max(finish.values(), default=0.0)


def run_template(template: str, root: Path, *, latency: float, parallel: int) -> Figures:
    project = make_project(root / template / "project")
    home = root / template / "home"

    def slow(body: Json) -> None:
        time.sleep(latency)  # the model's time; the agent answers after it

    config = AgentConfig(plan=lambda info: plan_items(info, parallel))
    with StandIn(agent=StageAgent(config), respond=slow) as api:
        env = {
            **os.environ,
            "STAGEFLOW_RUNNER": "anthropic",
            "ANTHROPIC_API_KEY": "test",
            "ANTHROPIC_BASE_URL": api.base_url,
            "STAGEFLOW_HOME": str(home),
        }
        for var in ("STAGEFLOW_DB", "STAGEFLOW_PROJECT", "ANTHROPIC_AUTH_TOKEN"):
            env.pop(var, None)
        view = _cli(["run", template, "--task", TASK], env, project)
        run_id = str(view["run_id"])
        for _ in range(20):
            if view["status"] != "waiting":
                break
            view = _cli(["approve", run_id, "--stage", view["waiting"][0]["stage"]], env, project)
        audit = _cli(["audit", run_id], env, project)
        records = [r for r in api.message_requests() if r.usage is not None]
    prompts = [r.prompt_tokens for r in records]
    ran = [s for s in view["stages"] if s["attempts"]]
    return Figures(
        template=template,
        status=str(view["status"]),
        requests=len(records),
        prompt_tokens=sum(prompts),
        peak_prompt_tokens=max(prompts, default=0),
        wall_s=round(wall_seconds(audit["events"]), 3),
        chain_s=round(longest_chain(view), 3),
        stages=len(ran),
    )


def report(figures: Sequence[Figures], latency: float, parallel: int, out: TextIO) -> None:
    out.write(
        f"decomposition on the stand-in: {latency:g} s per request, the coordinator plans "
        f"{parallel} parallel item(s) + 1 after them\n"
    )
    out.write(
        f"{'template':<21} {'status':<10} {'stages':>6} {'requests':>8} {'peak in/req':>11} "
        f"{'prompt tok':>10} {'wall s':>7} {'chain s':>7} {'ratio':>6}\n"
    )
    for f in figures:
        out.write(
            f"{f.template:<21} {f.status:<10} {f.stages:>6} {f.requests:>8} "
            f"{f.peak_prompt_tokens:>11,} {f.prompt_tokens:>10,} {f.wall_s:>7.2f} "
            f"{f.chain_s:>7.2f} {f.ratio:>6.3f}\n"
        )
    if len(figures) == 2 and all(f.prompt_tokens for f in figures):
        a, b = figures
        out.write(
            f"{a.template} / {b.template}: peak {a.peak_prompt_tokens / b.peak_prompt_tokens:.3f}, "
            f"prompt tokens {a.prompt_tokens / b.prompt_tokens:.3f}, wall "
            f"{a.wall_s / b.wall_s:.3f}\n"
        )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=0.2, help="seconds per model request")
    p.add_argument("--parallel", type=int, default=2, help="independent items in the plan")
    p.add_argument("--template", action="append", choices=TEMPLATES, help="default: both")
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="stageflow-decomposition-"))
    try:
        figures = [
            run_template(t, root, latency=args.latency, parallel=args.parallel)
            for t in args.template or TEMPLATES
        ]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        out.write(json.dumps([{**asdict(f), "ratio": f.ratio} for f in figures], indent=2) + "\n")
    else:
        report(figures, args.latency, args.parallel, out)
    return 0 if all(f.status == "completed" for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
