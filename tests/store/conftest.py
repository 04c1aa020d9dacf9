"""Fixtures for store tests: a fresh database file per test and small event builders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stageflow import events as ev
from stageflow.store import RunSummary, Store

RUNNING = RunSummary(status="running", spent_usd=0.0, budget_usd=None)


def run_created(task: str = "build the thing", **extra: object) -> ev.RunCreated:
    return ev.RunCreated.model_validate(
        {"template": "feature_development", "task": task, "spec": {"stages": []}, **extra}
    )


def started(stage: str = "design", attempt: int = 1) -> ev.AttemptStarted:
    return ev.AttemptStarted(stage=stage, attempt=attempt, agent="architect")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "project" / ".stageflow" / "state.db"


@pytest.fixture(params=["one-trip", "per-statement"])
async def store(db_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Every store test runs against both append paths (see ``stageflow.store.fastpath``)."""
    async with await Store.open(db_path) as opened:
        if request.param == "per-statement":
            opened._fast = False
        yield opened


async def new_run(store: Store, run_id: str = "r-1", *, at: float = 1000.0) -> ev.Envelope:
    return await store.create_run(run_id, run_created(), actor="tester", at=at, summary=RUNNING)
