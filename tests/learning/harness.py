"""An engine with the learning profiles wired in as the front ends wire them: a real SQLite
store, the scheduler with the chooser and the updater's sink, the service with the estimator,
and a scripted runner (``tests.engine.harness.FakeRunner``, whose attempts count as a model
runner's: ``runner="fake"``)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from stageflow.config import Settings, load_settings
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.learning.setup import Learning, build_learning
from stageflow.store.store import Store
from tests.engine.harness import WORKER, FakeRunner, write_template


def agent_file(
    name: str, model: str = "sonnet", description: str = "Builds what it is given."
) -> str:
    return (
        WORKER.replace("name: worker", f"name: {name}")
        .replace("model: sonnet", f"model: {model}")
        .replace("description: A test agent.", f"description: {description}")
    )


@dataclass
class LearningEnv:
    settings: Settings
    store: Store
    service: Service
    runner: FakeRunner
    scheduler: Scheduler
    learning: Learning

    async def run(self, template: str, task: str = "Add CSV export") -> RunState:
        """Start a run and drive it to its end (or until it needs a human), then sync."""
        state = await self.service.start_run(template, task)
        state = await self.scheduler.drive(state.run_id, until="idle")
        await self.learning.updater.drain()
        return state


@asynccontextmanager
async def learning_env(
    tmp_path: Path,
    template: str | None = None,
    *,
    runner: FakeRunner | None = None,
    agents: Mapping[str, str] | None = None,
    config: str = "",
    with_learning: bool = True,
) -> AsyncIterator[LearningEnv]:
    project = tmp_path / "project"
    folder = project / ".stageflow" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    # (the engine harness's worker calls itself "a test agent": its role would be testing)
    (folder / "worker.md").write_text(agent_file("worker"), encoding="utf-8")
    for name, text in (agents or {}).items():
        (folder / f"{name}.md").write_text(text, encoding="utf-8")
    if config:
        (project / ".stageflow" / "config.toml").write_text(textwrap.dedent(config), "utf-8")
    if template:
        write_template(project, textwrap.dedent(template))
    settings = load_settings(project, runner="offline")
    store = await Store.open(settings.db_path)
    runner = runner or FakeRunner()
    learning = build_learning(settings, store)
    scheduler = Scheduler(
        store,
        runner,
        poll_interval=0.05,
        sink=learning.updater.sink if with_learning else None,
        chooser=learning.chooser if with_learning else None,
    )
    service = Service(
        settings,
        store,
        runner_label="fake",
        estimator=learning.estimator if with_learning else None,
    )
    try:
        yield LearningEnv(settings, store, service, runner, scheduler, learning)
    finally:
        scheduler.close()
        await store.close()
