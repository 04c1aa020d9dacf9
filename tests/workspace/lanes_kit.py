"""Runs whose stages write files in a real git repository, with the real stage runner.

``lane_env`` opens a project (a git repository with one commit), the store, the real
``StageRunner`` (so lanes, worktrees, ``verify`` and the merge-stage check are the
production ones) whose model runner is a ``Writer``: a scripted agent that writes the files
it is told to in the attempt's workspace and submits. The scheduler and service get the
runner's ``WorktreeLanes``, as the CLI and server wire them.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stageflow.config import Settings, load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult, AttemptStatus
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.store.store import Store
from stageflow.subagents.command import CommandRunner
from stageflow.subagents.select import StageRunner

WRITER = """\
---
name: writer
description: Writes files.
tools: Read, Write, Edit
model: sonnet
---
You write the files you are given.
"""
READER = """\
---
name: reader
description: Reads files.
tools: Read, Glob, Grep
model: sonnet
---
You read.
"""

Files = dict[str, str]
Script = Callable[[AttemptRequest], Files | Awaitable[Files]]


def hermetic_git(root: Path, mp: pytest.MonkeyPatch) -> None:
    """The developer's git config stays out; the test's own commits get a fixed identity."""
    mp.setenv("GIT_CONFIG_GLOBAL", str(root / "gitconfig"))
    mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
    mp.setenv("GIT_CEILING_DIRECTORIES", str(root))
    for var in ("AUTHOR", "COMMITTER"):
        mp.setenv(f"GIT_{var}_NAME", "Test User")
        mp.setenv(f"GIT_{var}_EMAIL", "user@example.com")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def make_repo(project: Path, files: Files | None = None) -> Path:
    """A git repository on ``main`` with one commit of ``files``."""
    project.mkdir(parents=True, exist_ok=True)
    for rel, text in (files or {"README.md": "# demo\n", "app.py": "one\ntwo\nthree\n"}).items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "init")
    return project


@dataclass
class Writer:
    """A scripted agent: per stage, the files to write (relative to its workspace)."""

    scripts: dict[str, Script] = field(default_factory=dict)
    calls: list[AttemptRequest] = field(default_factory=list)
    name: str = "writer"
    # per stage, the outcomes of its attempts in turn (then "passed"): e.g. a review that
    # asks for changes once
    verdicts: dict[str, list[AttemptStatus]] = field(default_factory=dict)

    async def run(self, request: AttemptRequest) -> AttemptResult:
        self.calls.append(request)
        script = self.scripts.get(request.stage.id)
        files: Files = {}
        if script is not None:
            made = script(request)
            files = await made if isinstance(made, Awaitable) else made
        for rel, text in files.items():
            path = request.workdir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        queue = self.verdicts.get(request.stage.id) or []
        return AttemptResult(
            status=queue.pop(0) if queue else "passed",
            summary=f"{request.stage.id} wrote {', '.join(files) or 'nothing'}",
            artifacts={n: f"{request.stage.id}/{n}" for n in request.stage.produces},
            runner="writer",
            model="scripted",
        )


@dataclass
class LaneEnv:
    settings: Settings
    store: Store
    runner: StageRunner
    writer: Writer
    scheduler: Scheduler
    service: Service

    @property
    def project(self) -> Path:
        return self.settings.project

    async def run(self, template: str, task: str = "build it", **inputs: object) -> RunState:
        state = await self.service.start_run(template, task, inputs=dict(inputs))
        return await self.scheduler.drive(state.run_id, until="idle")

    def branch(self, name: str) -> str:
        return git(self.project, "rev-parse", name).strip()

    def log(self, rev: str, fmt: str = "%s") -> list[str]:
        return git(self.project, "log", f"--format={fmt}", rev).splitlines()

    def worktree(self, run_id: str) -> Path:
        return self.project / ".stageflow" / "worktrees" / run_id


def prepare_project(
    root: Path,
    mp: pytest.MonkeyPatch,
    template: str,
    *,
    files: Files | None = None,
    config: str = "",
) -> Path:
    """A git repository with the writer and reader agents, ``template`` and ``config``."""
    hermetic_git(root, mp)
    project = make_repo(root / "project", files)
    state_dir = project / ".stageflow"
    for sub, name, text in (("agents", "writer", WRITER), ("agents", "reader", READER)):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
        (state_dir / sub / f"{name}.md").write_text(text, encoding="utf-8")
    (state_dir / "workflows").mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(template)
    name = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln[:5] == "name:")
    (state_dir / "workflows" / f"{name}.yaml").write_text(text, encoding="utf-8")
    (state_dir / "config.toml").write_text(textwrap.dedent(config), encoding="utf-8")
    return project


@asynccontextmanager
async def open_lanes(project: Path) -> AsyncIterator[LaneEnv]:
    """The store, the real stage runner with a ``Writer``, scheduler and service of
    ``project`` (made by ``prepare_project``), wired as the CLI and server wire them."""
    os.environ.pop("ANTHROPIC_API_KEY", None)
    settings = load_settings(project, runner="anthropic")
    writer = Writer()
    runner = StageRunner(settings)
    runner._command = CommandRunner(default_timeout=60)
    runner._agent = writer  # the model runner: scripted, writing files
    store = await Store.open(settings.db_path)
    try:
        yield LaneEnv(
            settings,
            store,
            runner,
            writer,
            Scheduler(store, runner, poll_interval=0.05, lanes=runner.lanes),
            Service(settings, store, runner_label="writer", lanes=runner.lanes),
        )
    finally:
        await store.close()


@asynccontextmanager
async def lane_env(
    root: Path,
    mp: pytest.MonkeyPatch,
    template: str,
    *,
    files: Files | None = None,
    config: str = "",
) -> AsyncIterator[LaneEnv]:
    project = prepare_project(root, mp, template, files=files, config=config)
    async with open_lanes(project) as env:
        yield env
