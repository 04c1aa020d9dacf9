"""The CLI commands: each takes the opened ``App`` (or, for file-only commands, the arguments)
and returns an exit code."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import anyio

from stageflow.cli.app import App, drive, emit, show
from stageflow.cli.exits import EXIT_FAIL, EXIT_OK, EXIT_WAITING
from stageflow.cli.inputs import parse_inputs
from stageflow.cli.render import render_runs
from stageflow.config import Settings, load_settings
from stageflow.engine.adjust import Adjustment
from stageflow.engine.catalog_view import agent_info
from stageflow.engine.forecasts import CONFIRM_GATE
from stageflow.engine.state import HUMAN_WAIT
from stageflow.errors import InvalidArgument, InvalidState, Problem
from stageflow.workflows.model_names import KnownModels
from stageflow.workflows.spec import WorkflowSpec

# -- commands ------------------------------------------------------------------------------


async def cmd_templates(app: App, args: argparse.Namespace) -> int:
    if args.json:
        emit(app, app.service.catalog())  # the model workflow_templates returns
        return EXIT_OK
    agents = app.service.agents()
    catalog = app.service.templates(agents)
    for name in catalog.names():
        spec = catalog.entries[name].spec
        description = spec.description if spec else ""
        shape = _shape(spec) if spec else "(failed to load)"
        app.out.write(f"{name:<22} {description}\n{'':<22} {shape}\n")
    app.out.write("(* = approval gate, [each] = one sub-stage per item of a plan)\n")
    for e in catalog.errors:
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
            mark = ("[each]" if s.for_each else "") + ("*" if s.approval else "")
            layers.setdefault(depth[s.id], []).append(s.id + mark)
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
    items = [agent_info(reg.get(n)) for n in reg.names()]
    errors = [str(p) for p in reg.errors]
    if args.json:
        emit(app, {"agents": items, "errors": errors})
        return EXIT_OK
    for a in items:
        desc = a.description if len(a.description) <= 70 else a.description[:67] + "..."
        app.out.write(f"{a.name:<20} {a.model:<8} {a.layer:<15} {desc}\n")
    for e in errors:
        app.out.write(f"error: {e}\n")
    return EXIT_OK


async def cmd_run(app: App, args: argparse.Namespace) -> int:
    from stageflow.cli.learning import confirm_run

    inputs = parse_inputs(args.input)
    template, chosen = args.template, None
    if template.strip() == "auto":
        from stageflow.subagents.orchestrator.choose import choose_template

        chosen = await choose_template(app.settings, app.service.template_descriptions(), args.task)
        template = str(chosen["template"])
        if not app.quiet:
            app.out.write(f"template auto -> {template} ({chosen['by']}: {chosen['reason']})\n")
    state = await app.service.start_run(
        template, args.task, inputs=inputs, budget_usd=args.budget, actor="cli", chosen=chosen
    )
    if not app.quiet:
        app.out.write(
            f"started run {state.run_id} ({state.template}) with runner "
            f"{app.service.runner_label}\n"
        )
    state = await confirm_run(app, state, yes=args.yes)  # when its forecast needs a human
    # --wait: until the run ends, or stops for a human (exit 5 at a gate, 6 paused): nothing
    # can happen then until someone approves, rejects or resumes, here or elsewhere
    await _drive_watched(app, args, state.run_id)
    code = await show(app, state.run_id, as_json=args.json, drove=True, waited=args.wait)
    if code == EXIT_OK and (await app.service.state(state.run_id)).confirmation == "pending":
        return EXIT_WAITING  # nothing ran: a human must confirm the forecast first
    return code


async def _drive_watched(app: App, args: argparse.Namespace, run_id: str) -> None:
    """Execute the run here; with ``--wait`` on a terminal a live table redraws meanwhile."""
    if args.wait and not args.json and not app.quiet:
        from stageflow.cli.live import live_terminal, watch

        if live_terminal(app.out):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, app.service, run_id, app.out)
                await drive(app, run_id, "idle")
            return
    await drive(app, run_id, "idle")


async def cmd_status(app: App, args: argparse.Namespace) -> int:
    if args.run is None:
        items = await app.service.list_runs(limit=args.limit)
        if args.json:
            emit(app, [i.model_dump(mode="json") for i in items])
        else:
            render_runs(items, app.out)
        return EXIT_OK
    if getattr(args, "watch", False) and not args.json:
        from stageflow.cli.live import live_terminal, watch

        live = live_terminal(app.out)
        view = await watch(app.service, args.run, app.out)
        if live:
            return EXIT_FAIL if view.status == "failed" else EXIT_OK
    return await show(app, args.run, as_json=args.json)


async def _after_command(app: App, args: argparse.Namespace, run_id: str) -> int:
    wait = bool(getattr(args, "wait", False))
    drove = not getattr(args, "no_drive", False)
    if drove:
        await drive(app, run_id, "idle")
    as_json = bool(getattr(args, "json", False))
    return await show(app, run_id, as_json=as_json, drove=drove, waited=wait)


def os_user() -> str:
    """The person at this terminal, as the OS names them (recorded as the approver)."""
    import getpass

    try:
        return getpass.getuser() or "cli"
    except (KeyError, OSError):  # no name for this uid (a container, say)
        return "cli"


async def _decide(app: App, args: argparse.Namespace, decision: str, feedback: str | None) -> int:
    before = await app.service.state(args.run)
    approver = (args.approver or "").strip() or os_user()
    state = await app.service.decide(
        args.run,
        stage=args.stage,
        decision="approve" if decision == "approve" else "reject",
        feedback=feedback,
        approver=approver,
        attempt=getattr(args, "attempt", None),
        via="cli",
    )
    if not app.quiet:
        waits = (sid for sid, st in before.stages.items() if st.status in HUMAN_WAIT)
        pending = before.confirmation == "pending"
        decided = args.stage or (CONFIRM_GATE if pending else next(waits, "?"))
        after = state.stages.get(decided)
        more = ""
        if after is not None and after.status == "awaiting_approval" and decision == "approve":
            policy = state.stage_spec(decided).approval
            need = policy.min_approvals if policy is not None else 1
            more = f" ({len(set(after.approvals))} of {need} approvals)"
        app.out.write(f"recorded: {decision} of stage '{decided}' by {approver}{more}\n")
    return await _after_command(app, args, state.run_id)


async def cmd_approve(app: App, args: argparse.Namespace) -> int:
    return await _decide(app, args, "approve", args.comment)


async def cmd_reject(app: App, args: argparse.Namespace) -> int:
    return await _decide(app, args, "reject", args.feedback)


async def cmd_cancel(app: App, args: argparse.Namespace) -> int:
    await app.service.control(args.run, "cancel", reason=args.reason, actor="cli")
    return await show(app, args.run, as_json=args.json)


async def cmd_pause(app: App, args: argparse.Namespace) -> int:
    await app.service.control(args.run, "pause", reason=args.reason, actor="cli")
    return await show(app, args.run, as_json=args.json)


async def cmd_resume(app: App, args: argparse.Namespace) -> int:
    if args.all:
        stop = anyio.Event()
        rows = await app.store.active_run_ids()
        if not app.quiet:
            app.out.write(f"resuming {len(rows)} active run(s)\n")
        async with anyio.create_task_group() as tg:
            for run_id in rows:
                tg.start_soon(drive, app, run_id, "idle")
        stop.set()
        for run_id in rows:
            await show(app, run_id, as_json=args.json)
        return EXIT_OK
    if args.run is None:
        raise InvalidArgument("name a run, or use --all to resume every active run")
    state = await app.service.state(args.run)
    if state.paused:
        await app.service.control(
            args.run, "resume", budget_usd=args.budget, actor=os_user(), via="cli"
        )
    elif state.ended is not None:
        raise InvalidState(f"run {args.run} has ended ({state.ended}); nothing to resume")
    return await _after_command(app, args, args.run)


async def cmd_retry(app: App, args: argparse.Namespace) -> int:
    await app.service.control(args.run, "retry", stage=args.stage, reason=args.reason, actor="cli")
    return await _after_command(app, args, args.run)


async def cmd_land(app: App, args: argparse.Namespace) -> int:
    """Bring a completed run's branch into the user's branch (refused: exit 4, saying why)."""
    state = await app.service.land(args.run, strategy=args.strategy, into=args.into, actor="cli")
    done = state.git.landed[-1]
    if args.json:
        emit(app, await app.service.view(args.run))
    else:
        app.out.write(
            f"landed run {args.run} into {done.into} as {(done.commit or '-')[:12]} "
            f"({done.strategy})\n"
        )
    return EXIT_OK


async def cmd_adjust(app: App, args: argparse.Namespace) -> int:
    """``stageflow adjust RUN ACTION ...``: the same change as ``workflow_adjust``."""
    request = Adjustment(
        action=args.action,
        stage=args.stage,
        agent=args.agent,
        depends_on=args.depends_on or (),
        needs=args.needs or (),
        produces=args.produces or (),
        before=args.before or (),
        description=args.description or "",
        max_concurrent_agents=args.max,
        reason=args.reason,
    )
    state = await app.service.adjust(args.run, request, actor=args.by)
    if not app.quiet and state.adjustments:
        app.out.write(f"recorded: {state.adjustments[-1]}\n")
    return await _after_command(app, args, args.run)


async def cmd_artifact(app: App, args: argparse.Namespace) -> int:
    rec = await app.store.get_artifact(args.run, args.stage, args.name, args.version)
    if args.json:
        emit(
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
        emit(
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
    """Every error and warning of the given template files, in one pass, by file then line.

    Exit 1 when there is an error; warnings alone (an unknown model name) exit 0.
    """
    from stageflow.agents.registry import load_agents
    from stageflow.workflows.loader import validate_files

    settings = load_settings(args.project)
    agents = load_agents(settings.agent_dirs())
    paths = [Path(p) for p in args.files]
    result = validate_files(paths, agent_names=agents.names(), models=_known_models(settings))
    errors, warnings = result.errors, result.warnings
    if args.json:
        out.write(
            json.dumps(
                {
                    "ok": not errors,
                    "files": [str(p) for p in paths],
                    "problems": [p.__dict__ for p in errors],
                    "warnings": [p.__dict__ for p in warnings],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        _render_validation(len(paths), errors, warnings, out)
    return EXIT_FAIL if errors else EXIT_OK


def _render_validation(
    files: int, errors: list[Problem], warnings: list[Problem], out: TextIO
) -> None:
    """Errors and warnings of each file together by line, then a summary line."""
    order = {f: n for n, f in enumerate(dict.fromkeys(p.file for p in (*errors, *warnings)))}
    tagged = [(p, "") for p in errors] + [
        (replace(p, message=f"warning: {p.message}"), "w") for p in warnings
    ]
    tagged.sort(key=lambda t: (order[t[0].file], t[0].line or 0, t[1]))
    for problem, _ in tagged:
        out.write(f"{problem}\n")
    noted = f"; {len(warnings)} warning(s)" if warnings else ""
    if errors:
        with_errors = len({p.file for p in errors})
        out.write(f"{len(errors)} problem(s) in {with_errors} file(s){noted}\n")
    else:
        out.write(f"ok: {files} file(s) valid{noted}\n")


def _known_models(settings: Settings) -> KnownModels:
    """The model names a stage may give: the alias table and the priced ids (config included)."""
    from stageflow.models.pricing import load_price_table
    from stageflow.models.routing import load_routes

    routes, prices = load_routes(settings), load_price_table(settings)
    return KnownModels(
        aliases=tuple(routes.aliases),
        ids=tuple(dict.fromkeys([*prices.prices, *routes.aliases.values()])),
        as_of=prices.as_of,
        accepts=lambda name: prices.lookup(name) is not None,
    )


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from stageflow.cli.scaffold import init_project

    settings = load_settings(args.project)
    created = init_project(settings.project)
    for path in created:
        out.write(f"created {path}\n")
    if not created:
        out.write(f"{settings.state_dir} already set up; nothing changed\n")
    return EXIT_OK
