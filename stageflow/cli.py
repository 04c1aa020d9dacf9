"""The ``stageflow`` command.

Commands that change a run also execute it in the foreground when no other live process is
executing it: ``run`` drives the new run until it needs a human (or, with ``--wait``, until it
ends); ``approve``/``reject``/``resume``/``retry`` continue it the same way. When a server (or
another terminal) holds the run, they only record the decision and that process continues.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
from pydantic import BaseModel

from stageflow import __version__
from stageflow.cli_render import describe_event, render_run, render_runs
from stageflow.config import Settings, load_settings
from stageflow.engine import events as ev
from stageflow.engine.driver import Until
from stageflow.engine.scheduler import RunBusy, Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.errors import InvalidArgument, InvalidState, NotFound, SpecError, StageflowError
from stageflow.store.store import Store
from stageflow.subagents.select import describe_runner, make_runner
from stageflow.workflows.spec import WorkflowSpec

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STATE = 0, 1, 2, 3, 4


@dataclass
class App:
    settings: Settings
    store: Store
    service: Service
    scheduler: Scheduler
    out: TextIO
    quiet: bool


@asynccontextmanager
async def open_app(
    args: argparse.Namespace, *, out: TextIO, offline_delay: float = 0.0
) -> AsyncIterator[App]:
    settings = load_settings(getattr(args, "project", None), db=getattr(args, "db", None))
    store = await Store.open(settings.db_path)
    quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False))

    def sink(env: ev.Envelope, state: RunState) -> None:
        if quiet:
            return
        line = describe_event(env, state)
        if line:
            out.write(line + "\n")
            out.flush()

    try:
        runner = make_runner(settings, offline_delay=offline_delay)
        scheduler = Scheduler(
            store,
            runner,
            max_concurrent_agents=settings.max_concurrent_agents,
            lease_seconds=settings.lease_seconds,
            sink=sink,
        )
        service = Service(settings, store, runner_label=describe_runner(settings))
        yield App(settings, store, service, scheduler, out, quiet)
    finally:
        await store.close()


def _emit(app: App, model: BaseModel | list[Any] | dict[str, Any]) -> None:
    if isinstance(model, BaseModel):
        app.out.write(model.model_dump_json(indent=2) + "\n")
    else:
        app.out.write(json.dumps(model, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


async def _drive(app: App, run_id: str, until: Until) -> RunState | None:
    """Continue the run here unless another live process is executing it."""
    try:
        return await app.scheduler.drive(run_id, until=until)
    except RunBusy as exc:
        if not app.quiet:
            app.out.write(f"note: {exc}\n")
        return None


async def _show(app: App, run_id: str, *, as_json: bool) -> int:
    view = await app.service.view(run_id)
    if as_json:
        _emit(app, view)
    else:
        render_run(view, app.out)
    return EXIT_FAIL if view.status == "failed" else EXIT_OK


# -- commands ------------------------------------------------------------------------------


async def cmd_templates(app: App, args: argparse.Namespace) -> int:
    agents = app.service.agents()
    catalog = app.service.templates(agents)
    items: list[dict[str, Any]] = []
    for name in catalog.names():
        entry = catalog.entries[name]
        spec = entry.spec
        items.append(
            {
                "name": name,
                "source": str(entry.source),
                "layer": entry.layer,
                "description": spec.description if spec else "",
                "inputs": {k: v.model_dump() for k, v in spec.inputs.items()} if spec else {},
                "stages": [
                    {
                        "id": s.id,
                        "agent": s.agent,
                        "run": s.run,
                        "depends_on": s.depends_on,
                        "approval": bool(s.approval),
                        "gate": s.gate,
                        "when": s.when,
                    }
                    for s in spec.stages
                ]
                if spec
                else [],
                "problems": [str(p) for p in entry.problems],
            }
        )
    errors = [str(p) for p in catalog.errors]
    if args.json:
        _emit(app, {"templates": items, "errors": errors})
        return EXIT_OK
    for t in items:
        entry = catalog.entries[t["name"]]
        shape = _shape(entry.spec) if entry.spec else "(failed to load)"
        app.out.write(f"{t['name']:<22} {t['description']}\n{'':<22} {shape}\n")
    app.out.write("(* = approval gate)\n")
    for e in errors:
        app.out.write(f"error: {e}\n")
    return EXIT_OK


def _shape(spec: WorkflowSpec) -> str:
    """Stages grouped by depth: ``a* -> [b, c] -> d`` (``*`` marks an approval gate)."""
    rollback = spec.rollback_targets()
    depth: dict[str, int] = {}
    for s in spec.stages:  # templates are validated, so depends_on point at known stages
        depth[s.id] = 1 + max((depth.get(d, 0) for d in s.depends_on), default=-1)
    layers: dict[int, list[str]] = {}
    for s in spec.stages:
        if s.id not in rollback:
            layers.setdefault(depth[s.id], []).append(s.id + ("*" if s.approval else ""))
    parts = [
        names[0] if len(names) == 1 else "[" + ", ".join(names) + "]"
        for _, names in sorted(layers.items())
    ]
    text = " -> ".join(parts)
    if rollback:
        text += f"  (rollback: {', '.join(sorted(rollback))})"
    return text


async def cmd_agents(app: App, args: argparse.Namespace) -> int:
    reg = app.service.agents()
    items = [
        {
            "name": a.name,
            "model": a.model,
            "description": a.description,
            "tools": a.tools,
            "source": a.source,
            "layer": a.layer,
            "hash": a.content_hash[:12],
        }
        for a in (reg.get(n) for n in reg.names())
    ]
    errors = [str(p) for p in reg.errors]
    if args.json:
        _emit(app, {"agents": items, "errors": errors})
        return EXIT_OK
    for a in items:
        desc = str(a["description"])
        desc = desc if len(desc) <= 70 else desc[:67] + "..."
        app.out.write(f"{a['name']:<20} {a['model']:<8} {a['layer']:<15} {desc}\n")
    for e in errors:
        app.out.write(f"error: {e}\n")
    return EXIT_OK


async def cmd_run(app: App, args: argparse.Namespace) -> int:
    inputs = _parse_inputs(args.input)
    state = await app.service.start_run(
        args.template, args.task, inputs=inputs, budget_usd=args.budget, actor="cli"
    )
    if not app.quiet:
        app.out.write(
            f"started run {state.run_id} ({state.template}) with runner "
            f"{app.service.runner_label}\n"
        )
    await _drive(app, state.run_id, "terminal" if args.wait else "idle")
    return await _show(app, state.run_id, as_json=args.json)


def _parse_inputs(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--input expects NAME=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


async def cmd_status(app: App, args: argparse.Namespace) -> int:
    if args.run is None:
        items = await app.service.list_runs(limit=args.limit)
        if args.json:
            _emit(app, [i.model_dump(mode="json") for i in items])
        else:
            render_runs(items, app.out)
        return EXIT_OK
    return await _show(app, args.run, as_json=args.json)


async def _after_command(app: App, args: argparse.Namespace, run_id: str) -> int:
    if not getattr(args, "no_drive", False):
        await _drive(app, run_id, "terminal" if getattr(args, "wait", False) else "idle")
    return await _show(app, run_id, as_json=getattr(args, "json", False))


async def cmd_approve(app: App, args: argparse.Namespace) -> int:
    await app.service.decide(
        args.run,
        stage=args.stage,
        decision="approve",
        feedback=args.comment,
        approver=args.approver,
    )
    return await _after_command(app, args, args.run)


async def cmd_reject(app: App, args: argparse.Namespace) -> int:
    await app.service.decide(
        args.run,
        stage=args.stage,
        decision="reject",
        feedback=args.feedback,
        approver=args.approver,
    )
    return await _after_command(app, args, args.run)


async def cmd_cancel(app: App, args: argparse.Namespace) -> int:
    await app.service.control(args.run, "cancel", reason=args.reason, actor="cli")
    return await _show(app, args.run, as_json=args.json)


async def cmd_pause(app: App, args: argparse.Namespace) -> int:
    await app.service.control(args.run, "pause", reason=args.reason, actor="cli")
    return await _show(app, args.run, as_json=args.json)


async def cmd_resume(app: App, args: argparse.Namespace) -> int:
    if args.all:
        stop = anyio.Event()
        rows = await app.store.active_run_ids()
        if not app.quiet:
            app.out.write(f"resuming {len(rows)} active run(s)\n")
        async with anyio.create_task_group() as tg:
            for run_id in rows:
                tg.start_soon(_drive, app, run_id, "terminal" if args.wait else "idle")
        stop.set()
        for run_id in rows:
            await _show(app, run_id, as_json=args.json)
        return EXIT_OK
    if args.run is None:
        raise InvalidArgument("name a run, or use --all to resume every active run")
    state = await app.service.state(args.run)
    if state.paused:
        await app.service.control(args.run, "resume", budget_usd=args.budget, actor="cli")
    elif state.ended is not None:
        raise InvalidState(f"run {args.run} has ended ({state.ended}); nothing to resume")
    return await _after_command(app, args, args.run)


async def cmd_retry(app: App, args: argparse.Namespace) -> int:
    await app.service.control(args.run, "retry", stage=args.stage, reason=args.reason, actor="cli")
    return await _after_command(app, args, args.run)


async def cmd_artifact(app: App, args: argparse.Namespace) -> int:
    rec = await app.store.get_artifact(args.run, args.stage, args.name, args.version)
    if args.json:
        _emit(
            app,
            {
                "run_id": rec.run_id,
                "stage": rec.stage,
                "name": rec.name,
                "version": rec.version,
                "size": rec.size,
                "sha256": rec.sha256,
                "attempt": rec.attempt,
                "content": rec.content,
            },
        )
    else:
        app.out.write(rec.content if rec.content.endswith("\n") else rec.content + "\n")
    return EXIT_OK


async def cmd_audit(app: App, args: argparse.Namespace) -> int:
    report = await app.service.audit(args.run)
    if args.json:
        _emit(
            app,
            {
                "run_id": report.run_id,
                "ok": report.ok,
                "problems": report.problems,
                "events": [e.model_dump(mode="json") for e in report.events],
            },
        )
    else:
        import time as _time

        for env in report.events:
            stamp = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(env.at))
            body = env.event.model_dump(mode="json", exclude={"type", "spec", "agents"})
            short = json.dumps(body, ensure_ascii=False)
            short = short if len(short) <= 110 else short[:107] + "..."
            app.out.write(f"{env.seq:>4} {stamp} {env.actor:<28.28} {env.event.type:<18} {short}\n")
        if args.verify:
            if report.ok:
                app.out.write(
                    f"chain verified: {len(report.events)} entries, head "
                    f"{report.events[-1].hash[:16]}\n"
                )
            for p in report.problems:
                app.out.write(f"CHAIN BROKEN: {p}\n")
    return EXIT_OK if report.ok or not args.verify else EXIT_FAIL


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from stageflow.agents.registry import load_agents
    from stageflow.workflows.validate import validate_files

    settings = load_settings(args.project)
    agents = load_agents(settings.agent_dirs())
    paths = [Path(p) for p in args.files]
    problems = validate_files(paths, agent_names=agents.names())
    if args.json:
        out.write(
            json.dumps(
                {
                    "ok": not problems,
                    "files": [str(p) for p in paths],
                    "problems": [p.__dict__ for p in problems],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        for p in problems:
            out.write(f"{p}\n")
        if problems:
            files = len({p.file for p in problems})
            out.write(f"{len(problems)} problem(s) in {files} file(s)\n")
        else:
            out.write(f"ok: {len(paths)} file(s) valid\n")
    return EXIT_FAIL if problems else EXIT_OK


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from stageflow.scaffold import init_project

    settings = load_settings(args.project)
    created = init_project(settings.project)
    for path in created:
        out.write(f"created {path}\n")
    if not created:
        out.write(f"{settings.state_dir} already set up; nothing changed\n")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stageflow",
        description=("Run big coding tasks as durable workflows of fresh-context subagents."),
    )
    p.add_argument("--version", action="version", version=f"stageflow {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", help="project directory (default: cwd or STAGEFLOW_PROJECT)")
    common.add_argument("--db", help="state database (default: <project>/.stageflow/state.db)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        help_: str,
        fn: Callable[..., Any],
        *,
        json_: bool = False,
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, parents=[common])
        sp.set_defaults(fn=fn)
        if json_:
            sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    add("templates", "list workflow templates", cmd_templates, json_=True)
    add("agents", "list agent definitions", cmd_agents, json_=True)
    sp = add("validate", "validate template files", cmd_validate, json_=True)
    sp.add_argument("files", nargs="+", metavar="FILE")
    sp = add("run", "start a run and execute it until it needs a human", cmd_run, json_=True)
    sp.add_argument("template")
    sp.add_argument("--task", required=True, help="what the workflow should achieve")
    sp.add_argument(
        "--input",
        action="append",
        metavar="NAME=VALUE",
        help="template input (JSON values accepted); repeatable",
    )
    sp.add_argument("--budget", type=float, help="run budget in USD")
    sp.add_argument(
        "--wait",
        action="store_true",
        help="keep executing until the run ends (approvals from elsewhere continue it)",
    )
    sp = add("status", "show one run, or the recent runs", cmd_status, json_=True)
    sp.add_argument("run", nargs="?")
    sp.add_argument("--limit", type=int, default=20)

    def driving(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--wait", action="store_true", help="execute until the run ends")
        sp.add_argument(
            "--no-drive",
            action="store_true",
            help="only record; do not continue executing the run here",
        )

    sp = add("approve", "approve the stage waiting for a human", cmd_approve, json_=True)
    sp.add_argument("run")
    sp.add_argument("--stage")
    sp.add_argument("--comment")
    sp.add_argument("--approver", default="cli")
    driving(sp)
    sp = add("reject", "reject with feedback; the stage reruns with it", cmd_reject, json_=True)
    sp.add_argument("run")
    sp.add_argument("--feedback", required=True)
    sp.add_argument("--stage")
    sp.add_argument("--approver", default="cli")
    driving(sp)
    sp = add("cancel", "cancel a run (running stages are cancelled)", cmd_cancel, json_=True)
    sp.add_argument("run")
    sp.add_argument("--reason")
    sp = add(
        "pause", "pause a run (running stages finish, nothing new starts)", cmd_pause, json_=True
    )
    sp.add_argument("run")
    sp.add_argument("--reason")
    sp = add("resume", "resume a paused or interrupted run", cmd_resume, json_=True)
    sp.add_argument("run", nargs="?")
    sp.add_argument("--budget", type=float, help="raise the run budget (USD)")
    sp.add_argument("--all", action="store_true", help="resume every active run")
    driving(sp)
    sp = add("retry", "retry failed stages (or one stage)", cmd_retry, json_=True)
    sp.add_argument("run")
    sp.add_argument("--stage")
    sp.add_argument("--reason")
    driving(sp)
    sp = add(
        "artifact", "print an artifact (latest version unless --version)", cmd_artifact, json_=True
    )
    sp.add_argument("run")
    sp.add_argument("stage")
    sp.add_argument("name")
    sp.add_argument("--version", type=int, help="a specific version (reworks add versions)")
    sp = add("audit", "show the run's event log", cmd_audit, json_=True)
    sp.add_argument("run")
    sp.add_argument("--verify", action="store_true", help="recompute the hash chain")
    add("init", "create .stageflow/ with an example agent, template and note", cmd_init)
    sp = add("demo", "run feature_development offline in a temporary project", _demo_entry)
    sp.add_argument("--yes", action="store_true", help="approve gates without asking")
    sp.add_argument(
        "--delay", type=float, default=0.4, help="simulated seconds of work per stage (default 0.4)"
    )
    sp.add_argument("--keep", action="store_true", help="keep the temporary project")
    return p


def _demo_entry(args: argparse.Namespace, out: TextIO) -> int:
    from stageflow.cli_demo import run_demo

    return run_demo(args, out)


SYNC_COMMANDS = {"validate", "init", "demo"}


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in SYNC_COMMANDS:
            return int(args.fn(args, out))

        async def go() -> int:
            async with open_app(args, out=out) as app:
                return int(await args.fn(app, args))

        return anyio.run(go)
    except NotFound as exc:
        sys.stderr.write(f"stageflow: {exc}\n")
        return EXIT_NOT_FOUND
    except (InvalidState, InvalidArgument) as exc:
        sys.stderr.write(f"stageflow: {exc}\n")
        return EXIT_STATE if isinstance(exc, InvalidState) else EXIT_USAGE
    except SpecError as exc:
        sys.stderr.write(f"stageflow: invalid definition:\n{exc}\n")
        return EXIT_FAIL
    except StageflowError as exc:
        sys.stderr.write(f"stageflow: {exc}\n")
        return EXIT_FAIL
    except BrokenPipeError:  # e.g. `stageflow agents | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("stageflow: interrupted; the run resumes with `stageflow resume`\n")
        return 130
