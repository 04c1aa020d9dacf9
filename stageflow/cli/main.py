"""The ``stageflow`` command.

Commands that change a run also execute it in the foreground when no other live process is
executing it: ``run`` drives the new run until it needs a human (or, with ``--wait``, until it
ends); ``approve``/``reject``/``resume``/``retry`` continue it the same way. When a server (or
another terminal) holds the run, they only record the decision and that process continues.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import anyio

from stageflow import __version__
from stageflow.cli.exits import EXIT_FAIL, EXIT_NOT_FOUND, EXIT_OK, EXIT_STATE, EXIT_USAGE
from stageflow.cli.knowledge_parser import add_knowledge_parser
from stageflow.cli.learning_parser import add_learning_parsers
from stageflow.errors import InvalidArgument, InvalidState, NotFound, SpecError, StageflowError

# stageflow.engine.adjust.ACTIONS, spelled out so the parser imports no engine (a test keeps
# the two equal)
ADJUST_ACTIONS = ("add_stage", "skip_stage", "set_concurrency", "escalate")

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
        fn: str,
        *,
        json_: bool = False,
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, parents=[common])
        sp.set_defaults(fn=fn)
        if json_:
            sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    sp = add("serve", "serve the MCP server (stdio unless --transport)", "serve:cmd_serve")
    sp.add_argument("--transport", choices=("stdio", "sse", "http"), default="stdio")
    sp.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    sp.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="extra Host name clients may use on a non-loopback bind; repeatable",
    )
    sp.add_argument(
        "--session-idle",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="end an HTTP session idle this long (default 300)",
    )
    sp.add_argument(
        "--sessions-per-client",
        type=int,
        default=32,
        metavar="N",
        help="HTTP sessions one client may keep; one more ends its least recently used (32)",
    )
    sp = add("dashboard", "serve the live dashboard in the browser", "dashboard:cmd_dashboard")
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8766, help="port (default 8766; 0 picks one)")
    sp.add_argument("--open", action="store_true", help="open the URL in the web browser")
    sp.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="extra Host name browsers may use on a non-loopback bind; repeatable",
    )
    sp = add(
        "costs", "model spend across runs, from the cost ledger", "costs:cmd_costs", json_=True
    )
    sp.add_argument("--since", default="7d", help="how far back: 90m, 12h, 7d, 2w (default 7d)")
    sp.add_argument("--by", choices=("template", "agent", "model", "category"), default="template")
    add("templates", "list workflow templates", "commands:cmd_templates", json_=True)
    add("agents", "list agent definitions", "commands:cmd_agents", json_=True)
    sp = add("validate", "validate template files", "commands:cmd_validate", json_=True)
    sp.add_argument("files", nargs="+", metavar="FILE")
    sp = add(
        "run", "start a run and execute it until it needs a human", "commands:cmd_run", json_=True
    )
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
        help="keep executing until the run ends; exit 5 when a gate waits for a human, 6 when "
        "the run pauses (at its budget)",
    )
    sp.add_argument(
        "--yes",
        action="store_true",
        help="confirm the run's cost forecast when it is above [budget] confirm_above_usd "
        "(otherwise a terminal asks, and elsewhere the run waits for `stageflow approve`)",
    )
    sp = add("status", "show one run, or the recent runs", "commands:cmd_status", json_=True)
    sp.add_argument("run", nargs="?")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument(
        "--watch",
        action="store_true",
        help="follow the run until it needs a human or ends (a live table on a terminal)",
    )

    def driving(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--wait", action="store_true", help="execute until the run ends")
        sp.add_argument(
            "--no-drive",
            action="store_true",
            help="only record; do not continue executing the run here",
        )

    sp = add("approve", "approve the stage waiting for a human", "commands:cmd_approve", json_=True)
    sp.add_argument("run")
    sp.add_argument("--stage")
    sp.add_argument("--comment")
    sp.add_argument("--attempt", type=int, help="the attempt you reviewed (status shows it)")
    sp.add_argument("--approver", help="who decides (default: your OS user name)")
    driving(sp)
    sp = add(
        "reject",
        "reject with feedback; the stage reruns with it",
        "commands:cmd_reject",
        json_=True,
    )
    sp.add_argument("run")
    sp.add_argument("--feedback", required=True)
    sp.add_argument("--stage")
    sp.add_argument("--attempt", type=int, help="the attempt you reviewed (status shows it)")
    sp.add_argument("--approver", help="who decides (default: your OS user name)")
    driving(sp)
    sp = add(
        "cancel", "cancel a run (running stages are cancelled)", "commands:cmd_cancel", json_=True
    )
    sp.add_argument("run")
    sp.add_argument("--reason")
    sp = add(
        "pause",
        "pause a run (running stages finish, nothing new starts)",
        "commands:cmd_pause",
        json_=True,
    )
    sp.add_argument("run")
    sp.add_argument("--reason")
    sp = add("resume", "resume a paused or interrupted run", "commands:cmd_resume", json_=True)
    sp.add_argument("run", nargs="?")
    sp.add_argument("--budget", type=float, help="raise the run budget (USD)")
    sp.add_argument("--all", action="store_true", help="resume every active run")
    driving(sp)
    sp = add("retry", "retry failed stages (or one stage)", "commands:cmd_retry", json_=True)
    sp.add_argument("run")
    sp.add_argument("--stage")
    sp.add_argument("--reason")
    driving(sp)
    sp = add(
        "land",
        "bring a completed run's branch into your branch (squash into the one it started from)",
        "commands:cmd_land",
        json_=True,
    )
    sp.add_argument("run")
    sp.add_argument("--strategy", choices=("squash", "merge", "rebase"), default="squash")
    sp.add_argument("--into", metavar="BRANCH", help="the branch to land into (made if missing)")
    sp = add(
        "adjust",
        "change a run while it runs: add_stage, skip_stage, set_concurrency, escalate",
        "commands:cmd_adjust",
        json_=True,
    )
    sp.add_argument("run")
    sp.add_argument("action", choices=ADJUST_ACTIONS)
    sp.add_argument("--stage", help="the stage to add, skip or escalate")
    sp.add_argument("--agent", help="add_stage: who runs it; escalate: the decision agent")
    sp.add_argument("--depends-on", action="append", metavar="STAGE", help="repeatable")
    sp.add_argument("--needs", action="append", metavar="STAGE.ARTIFACT", help="repeatable")
    sp.add_argument("--produces", action="append", metavar="NAME", help="repeatable")
    sp.add_argument(
        "--before", action="append", metavar="STAGE", help="a stage that waits for it; repeatable"
    )
    sp.add_argument("--description", help="add_stage: the stage's goal")
    sp.add_argument("--max", type=int, help="set_concurrency: the new max_concurrent_agents")
    sp.add_argument("--reason")
    sp.add_argument("--by", default="cli", help="who asked (recorded in the audit log)")
    driving(sp)
    sp = add(
        "artifact",
        "print an artifact (latest version unless --version)",
        "commands:cmd_artifact",
        json_=True,
    )
    sp.add_argument("run")
    sp.add_argument("stage")
    sp.add_argument("name")
    sp.add_argument("--version", type=int, help="a specific version (reworks add versions)")
    sp = add("audit", "show the run's event log", "commands:cmd_audit", json_=True)
    sp.add_argument("run")
    sp.add_argument("--verify", action="store_true", help="recompute the hash chain")
    add_knowledge_parser(sub, common)
    add_learning_parsers(add)
    add("init", "create .stageflow/ with an example agent, template and note", "commands:cmd_init")
    add(
        "doctor",
        "check Python, database, runner, Claude Code registration and git",
        "doctor:cmd_doctor",
        json_=True,
    )
    sp = add("demo", "run feature_development offline in a temporary project", "demo:run_demo")
    sp.add_argument("--yes", action="store_true", help="approve gates without asking")
    sp.add_argument(
        "--delay", type=float, default=0.4, help="simulated seconds of work per stage (default 0.4)"
    )
    sp.add_argument("--keep", action="store_true", help="keep the temporary project")
    return p


def resolve(fn: str) -> Callable[..., Any]:
    """``"module:function"`` of ``stageflow.cli``, imported now: a command pays only for
    what it uses (``serve`` must answer ``initialize`` fast)."""
    module, _, name = fn.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(f"stageflow.cli.{module}"), name)
    return found


SYNC_COMMANDS = {"validate", "init", "demo", "serve", "doctor"}


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fn = resolve(args.fn)
        if args.command in SYNC_COMMANDS:
            return int(fn(args, out))
        from stageflow.cli.app import open_app

        async def go() -> int:
            async with open_app(args, out=out) as app:
                return int(await fn(app, args))

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
