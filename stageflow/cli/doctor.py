"""``stageflow doctor``: is this machine and project ready, and if not, what to do about it.

Each check reads; none changes anything. They cover what a first run trips over: the Python
version, where the ``stageflow`` command is (Claude Code starts servers without your shell's
PATH additions, so a virtualenv's ``stageflow`` must be registered by its absolute path), the
state database, the runner agent stages would use, the Claude Code registration (``claude mcp
get stageflow``, which also starts the server once to see that it answers), and git (runs work
in a worktree of the project's repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal, TextIO

import anyio
from pydantic import Field

from stageflow.base import Model
from stageflow.cli.exits import EXIT_FAIL, EXIT_OK
from stageflow.config import Settings, load_settings
from stageflow.errors import DatabaseError
from stageflow.store.store import Store
from stageflow.subagents.select import NO_RUNNER_MESSAGE, resolve_runner_name

Status = Literal["ok", "warn", "fail"]
CLAUDE_TIMEOUT_S = 90.0  # `claude mcp get` starts the server once to check it answers


class Check(Model):
    name: str
    status: Status
    detail: str
    fix: str = Field("", description="what to do, when the status is not ok")


class DoctorReport(Model):
    project: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


def serve_command() -> list[str]:
    """The absolute command that starts this stageflow's server, whatever PATH says."""
    script = Path(sys.executable).with_name("stageflow")
    if script.is_file():
        return [str(script), "serve"]
    return [sys.executable, "-m", "stageflow", "serve"]


def _add_command(scope: str = "user") -> str:
    argv = " ".join(_quoted(a) for a in serve_command())
    return f"claude mcp add --scope {scope} stageflow -- {argv}"


def _quoted(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " \"'$") else arg


def check_python() -> Check:
    version = ".".join(str(n) for n in sys.version_info[:3])
    if sys.version_info < (3, 11):  # noqa: UP036 - installed with --ignore-requires-python
        return Check(name="python", status="fail", detail=version, fix="install Python 3.11+")
    return Check(name="python", status="ok", detail=f"{version} ({sys.executable})")


def check_command() -> Check:
    mine = serve_command()[0]
    on_path = shutil.which("stageflow")
    if on_path and Path(on_path).resolve() == Path(mine).resolve():
        return Check(name="stageflow", status="ok", detail=f"{mine} (on PATH)")
    where = f"PATH has another one: {on_path}" if on_path else "not on PATH"
    return Check(
        name="stageflow",
        status="warn",
        detail=f"{mine} ({where})",
        fix=f"register the server by its absolute path: {_add_command()}",
    )


async def check_database(settings: Settings) -> Check:
    path = settings.db_path
    if not path.exists():
        return Check(name="database", status="ok", detail=f"{path} (created on first use)")
    try:
        async with await Store.open(path, access="auto") as store:
            runs = await store.list_runs(limit=1_000_000)
            read_only = store.read_only
    except DatabaseError as exc:
        return Check(name="database", status="fail", detail=str(exc), fix="see the message")
    detail = f"{path}: {len(runs)} run(s)"
    if read_only:
        return Check(
            name="database",
            status="warn",
            detail=f"{detail}, read-only",
            fix=f"runs cannot start or continue until {path} and its folder are writable",
        )
    return Check(name="database", status="ok", detail=detail)


def check_runner(settings: Settings) -> Check:
    name = resolve_runner_name(settings)
    chosen = f"STAGEFLOW_RUNNER={settings.runner}"
    if name is None:
        return Check(name="runner", status="fail", detail=chosen, fix=NO_RUNNER_MESSAGE)
    if name == "offline":
        return Check(
            name="runner",
            status="warn",
            detail=f"offline ({chosen}): scripted output, no model is called",
            fix="for real stages set ANTHROPIC_API_KEY or install Claude Code",
        )
    if name == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        return Check(
            name="runner",
            status="fail",
            detail=f"anthropic ({chosen}) but ANTHROPIC_API_KEY is not set",
            fix="export ANTHROPIC_API_KEY=... (or STAGEFLOW_RUNNER=claude-code)",
        )
    if name == "claude-code" and _claude() is None:
        return Check(
            name="runner",
            status="fail",
            detail=f"claude-code ({chosen}) but no `claude` on PATH",
            fix="npm install -g @anthropic-ai/claude-code (or set STAGEFLOW_CLAUDE)",
        )
    return Check(name="runner", status="ok", detail=f"{name} ({chosen})")


def _claude() -> str | None:
    return shutil.which(os.environ.get("STAGEFLOW_CLAUDE") or "claude")


def check_registration(project: Path) -> Check:
    claude = _claude()
    if claude is None:
        return Check(
            name="claude code",
            status="warn",
            detail="no `claude` on PATH (STAGEFLOW_CLAUDE names another one)",
            fix="install Claude Code to use stageflow from it, then: " + _add_command(),
        )
    try:
        done = subprocess.run(
            [claude, "mcp", "get", "stageflow"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=CLAUDE_TIMEOUT_S,
            check=False,
            env={**os.environ, "DISABLE_AUTOUPDATER": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name="claude code", status="warn", detail=f"`claude mcp get` failed: {exc}")
    text = done.stdout + done.stderr
    if done.returncode != 0 or "Status:" not in text:
        project_file = project / ".mcp.json"
        pending = project_file.is_file() and "stageflow" in project_file.read_text("utf-8")
        if pending:
            return Check(
                name="claude code",
                status="warn",
                detail=f"stageflow is in {project_file}, not yet approved in Claude Code",
                fix="run `claude` in the project and approve the stageflow server (Claude "
                "Code asks before starting servers from a project's .mcp.json)",
            )
        return Check(
            name="claude code",
            status="warn",
            detail="stageflow is not registered with Claude Code",
            fix=_add_command(),
        )
    fields = _fields(text)
    status, command = fields.get("Status", "?"), fields.get("Command", "?")
    args = fields.get("Args", "")
    detail = f"{command} {args}".strip() + f" [{fields.get('Scope', '?')}]: {status}"
    if "Connected" in status and "Failed" not in status:
        return Check(name="claude code", status="ok", detail=detail)
    scope = fields.get("Scope", "").split(" ")[0].lower() or "local"
    fix = f"claude mcp remove stageflow --scope {scope}, then {_add_command(scope)}"
    if shutil.which(command) is None and not Path(command).is_file():
        fix = f"`{command}` is not found where Claude Code starts it: {fix}"
    return Check(name="claude code", status="fail", detail=detail, fix=fix)


def _fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key and key[0].isupper() and " " not in key:
            out.setdefault(key, value.strip())
    return out


def check_git(project: Path) -> Check:
    git = shutil.which("git")
    if git is None:
        return Check(
            name="git",
            status="warn",
            detail="git not found",
            fix="install git: runs work in a git worktree, so your working tree is untouched",
        )

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [git, "-C", str(project), *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    if run("rev-parse", "--is-inside-work-tree").returncode != 0:
        return Check(
            name="git",
            status="warn",
            detail=f"{project} is not a git repository",
            fix="`git init` and commit: without git, agent stages may only read files unless "
            "the template sets workspace: in_place",
        )
    if run("rev-parse", "--verify", "HEAD").returncode != 0:
        return Check(
            name="git",
            status="warn",
            detail="the repository has no commit yet",
            fix="make a first commit: each run's worktree starts from HEAD",
        )
    return Check(name="git", status="ok", detail="runs work in .stageflow/worktrees/<run>")


async def diagnose(settings: Settings) -> DoctorReport:
    """Every check, in the order a first run meets them."""
    checks = [
        check_python(),
        check_command(),
        await check_database(settings),
        check_runner(settings),
        await anyio.to_thread.run_sync(check_registration, settings.project),
        await anyio.to_thread.run_sync(check_git, settings.project),
    ]
    return DoctorReport(project=str(settings.project), checks=checks)


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    """``stageflow doctor [--json]``: exit 0 when nothing failed (warnings allowed), else 1."""
    settings = load_settings(args.project, db=args.db)
    report = anyio.run(diagnose, settings)
    if args.json:
        out.write(json.dumps({**report.model_dump(), "ok": report.ok}, indent=2) + "\n")
    else:
        out.write(f"stageflow doctor: {report.project}\n")
        for c in report.checks:
            out.write(f"  {c.status:<4}  {c.name:<11}  {c.detail}\n")
            if c.fix and c.status != "ok":
                out.write(f"  {'':<4}  {'':<11}  fix: {c.fix}\n")
        out.write("ready\n" if report.ok else "not ready: fix the failed checks above\n")
    return EXIT_OK if report.ok else EXIT_FAIL
