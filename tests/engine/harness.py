"""Integration harness: a real SQLite store in tmp_path, the real scheduler, a scripted runner."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from stageflow.config import Settings, load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.store.store import Store
from stageflow.usage import Usage

Behaviour = Callable[[AttemptRequest], Awaitable[AttemptResult]]

WORKER = """\
---
name: worker
description: A test agent.
model: sonnet
---
You do the work you are given and hand back every artifact named in produces.
"""


def default_result(req: AttemptRequest, **kw: Any) -> AttemptResult:
    arts = {
        n: f"{req.stage.id}/{n} attempt {req.attempt}\nfeedback: {req.feedback}\n"
        for n in req.stage.produces
    }
    return AttemptResult(
        status="passed",
        summary=f"{req.stage.id} done",
        artifacts=arts,
        runner="fake",
        model="fake-model",
        **kw,
    )


@dataclass
class FakeRunner:
    """Scripted per stage; records every request and the time span of every call."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    name: str = "fake"
    calls: list[AttemptRequest] = field(default_factory=list)
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    active: int = 0
    peak: int = 0

    async def run(self, request: AttemptRequest) -> AttemptResult:
        self.calls.append(request)
        self.active += 1
        self.peak = max(self.peak, self.active)
        t0 = anyio.current_time()
        try:
            fn = self.behaviours.get(request.stage.id)
            if fn is None:
                await anyio.lowlevel.checkpoint()
                return default_result(request)
            return await fn(request)
        finally:
            self.active -= 1
            self.spans.append((request.stage.id, t0, anyio.current_time()))


@dataclass
class Env:
    settings: Settings
    store: Store
    service: Service
    runner: FakeRunner
    scheduler: Scheduler


def write_template(project: Path, text: str) -> None:
    d = project / ".stageflow" / "workflows"
    d.mkdir(parents=True, exist_ok=True)
    name = next(
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("name:")
    )
    (d / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


@asynccontextmanager
async def engine_env(
    tmp_path: Path,
    template: str | None = None,
    *,
    runner: FakeRunner | None = None,
    max_agents: int = 8,
    lease_seconds: float = 15.0,
) -> AsyncIterator[Env]:
    project = tmp_path / "project"
    agents = project / ".stageflow" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "worker.md").write_text(WORKER, encoding="utf-8")
    if template:
        write_template(project, textwrap.dedent(template))
    settings = load_settings(project, runner="offline")
    store = await Store.open(settings.db_path)
    runner = runner or FakeRunner()
    try:
        yield Env(
            settings,
            store,
            Service(settings, store, runner_label="fake"),
            runner,
            Scheduler(
                store,
                runner,
                max_concurrent_agents=max_agents,
                lease_seconds=lease_seconds,
                poll_interval=0.05,
            ),
        )
    finally:
        await store.close()


def cost(usd: float) -> Usage:
    return Usage(input_tokens=100, output_tokens=50, cost_usd=usd, requests=1)


async def wait_until(check: Callable[[], Awaitable[bool]], *, limit: float = 5.0) -> None:
    """Poll ``check`` until it is true, bounded by ``limit`` seconds."""
    with anyio.fail_after(limit):
        while True:
            if await check():
                return
            await anyio.sleep(0.01)
