"""``stageflow demo``: the workflow machinery end to end, offline, in a temporary project.

No API key and no network: every stage is done by the scripted offline runner, and the output
says so. The demo stops at each approval gate and asks (on a terminal) or approves by itself
(otherwise), then prints the final dashboard, the artifacts and the verified audit chain.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import anyio

from stageflow import events as ev
from stageflow.cli.render import describe_event, render_run
from stageflow.cli.scaffold import init_project
from stageflow.config import load_settings
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.store.store import Store
from stageflow.subagents.select import make_runner

DEMO_TASK = "Add CSV export to the monthly usage report, with a download button and tests"
BANNER = (
    "=" * 78 + "\n"
    "stageflow demo - OFFLINE: no model is called and nothing leaves this machine.\n"
    "Every stage is done by stageflow's scripted offline runner; its artifacts are\n"
    "labelled [offline]. Set ANTHROPIC_API_KEY (or install Claude Code) for real agents.\n"
    + "=" * 78
    + "\n"
)


def _ask(out: TextIO, stage: str) -> tuple[str, str | None]:
    out.write(f"\nApprove '{stage}'? [Y]es / [r]eject with feedback / [q]uit: ")
    out.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer.startswith("q"):
        return "quit", None
    if answer.startswith("r"):
        out.write("feedback: ")
        out.flush()
        feedback = sys.stdin.readline().strip() or "Please tighten the plan."
        return "reject", feedback
    return "approve", None


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    interactive = sys.stdin.isatty() and not args.yes
    project = Path(tempfile.mkdtemp(prefix="stageflow-demo-"))
    try:
        return anyio.run(_demo, project, out, interactive, float(args.delay))
    finally:
        if args.keep:
            out.write(f"project kept at {project}\n")
        else:
            shutil.rmtree(project, ignore_errors=True)


async def _demo(project: Path, out: TextIO, interactive: bool, delay: float) -> int:
    out.write(BANNER)
    init_project(project)
    settings = load_settings(project, runner="offline")
    out.write(f"project: {project} (temporary)\nstate:   {settings.db_path}\n\n")

    def sink(env: ev.Envelope, state: RunState) -> None:
        line = describe_event(env, state)
        if line:
            out.write(line + "\n")
            out.flush()

    async with await Store.open(settings.db_path) as store:
        runner = make_runner(settings, offline_delay=delay)
        scheduler = Scheduler(store, runner, sink=sink, lease_seconds=settings.lease_seconds)
        service = Service(settings, store, runner_label="offline (scripted, no model calls)")
        state = await service.start_run("feature_development", DEMO_TASK, actor="demo")
        out.write(f"started run {state.run_id}: feature_development\ntask: {DEMO_TASK}\n\n")
        while True:
            state = await scheduler.drive(state.run_id, until="idle")
            if state.ended is not None or state.paused:
                break
            waiting = [
                sid
                for sid, st in state.stages.items()
                if st.status in ("awaiting_approval", "blocked")
            ]
            if not waiting:
                break
            stage = waiting[0]
            view = await service.view(state.run_id)
            out.write("\n")
            render_run(view, out)
            if interactive:
                decision, feedback = _ask(out, stage)
                if decision == "quit":
                    out.write(f"left run {state.run_id} waiting at '{stage}'\n")
                    return 0
            else:
                decision, feedback = "approve", None
                why = "--yes" if sys.stdin.isatty() else "not a terminal"
                out.write(f"\n({why}: approving '{stage}' automatically)\n")
            await service.decide(
                state.run_id,
                stage=stage,
                decision=decision,  # type: ignore[arg-type]
                feedback=feedback,
                approver="demo-user",
                via="cli",
                attempt=next((w.attempt for w in view.waiting if w.stage == stage), None),
            )
            said = f" with feedback: {feedback}" if feedback else ""
            out.write(f"{decision}d '{stage}' as demo-user{said}\n\n")
        view = await service.view(state.run_id)
        out.write("\nfinal status\n")
        render_run(view, out)
        design = await store.get_artifact(state.run_id, "architecture", "design")
        out.write(f"\n--- architecture/design v{design.version} (first lines) ---\n")
        out.write("\n".join(design.content.splitlines()[:12]) + "\n...\n")
        report = await service.audit(state.run_id)
        verdict = "verified" if report.ok else "BROKEN: " + "; ".join(report.problems)
        out.write(f"\naudit: {len(report.events)} hash-chained events, chain {verdict}\n")
        out.write(
            "\nThis project is temporary; `stageflow demo --keep` keeps it so you can try\n"
            f"`stageflow status --project {project}` and the other commands on it.\n"
        )
        return 0 if view.status == "completed" and report.ok else 1
