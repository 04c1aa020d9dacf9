"""Runs feed the knowledge base: every finished attempt's artifacts are indexed, and a passed
attempt that marks a decision writes it as a numbered Markdown file that search finds."""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from stageflow.config import Settings, load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult, AttemptStatus
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.knowledge.decisions import (
    Decision,
    DecisionRecord,
    KnowledgeRecorder,
    decision_of,
    decisions_dir,
    slugify,
    write_decision,
)
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store.store import Store

pytestmark = pytest.mark.anyio

TEMPLATE = """\
name: design_review
description: Design, then review
stages:
  - id: architecture
    agent: architect
    produces: [design, notes]
  - id: review
    agent: reviewer
    depends_on: [architecture]
    needs: [architecture.design]
    produces: [review]
"""

DESIGN = """\
# Use an outbox for order events

Write the order and its event in one transaction; a relay publishes the outbox table.
"""


def record(**fields: Any) -> DecisionRecord:
    base: dict[str, Any] = {
        "run_id": "r-1",
        "stage": "architecture",
        "attempt": 1,
        "title": "Use an outbox for order events",
        "status": "accepted",
        "date": "2025-03-01",
        "body": DESIGN,
    }
    return DecisionRecord(**{**base, **fields})


def front(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head = text[4 : text.index("\n---\n")]
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data


# -- reading outputs.decision ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (False, None),
        ("", None),
        ({}, None),
        (True, Decision(None, "accepted")),
        ("Use Redis", Decision("Use Redis", "accepted")),
        (
            {"title": "Drop MySQL", "status": "Proposed", "tags": ["db"]},
            Decision("Drop MySQL", "proposed", ("db",)),
        ),
        ({"status": "superseded"}, Decision(None, "superseded")),
        (1, Decision(None, "accepted")),
    ],
)
def test_outputs_decision_is_read_leniently(value: Any, expected: Decision | None) -> None:
    assert decision_of(value) == expected


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Use an outbox for order events", "use-an-outbox-for-order-events"),
        ("Café / naïve: UTF-8 everywhere!", "cafe-naive-utf-8-everywhere"),
        ("日本語だけ", "decision"),
        ("x" * 200, "x" * 60),
        ("word " * 30, ("word-" * 12).rstrip("-")),
    ],
)
def test_slugs_are_short_ascii_file_names(title: str, slug: str) -> None:
    assert slugify(title) == slug


# -- writing the file ----------------------------------------------------------------------


def test_a_decision_file_has_the_front_matter_and_the_artifact(tmp_path: Path) -> None:
    path = write_decision(tmp_path, record(tags=("events",)))
    assert path.name == "0001-use-an-outbox-for-order-events.md"
    assert front(path) == {
        "type": "decision",
        "id": "decisions/0001-use-an-outbox-for-order-events",
        "title": "Use an outbox for order events",
        "status": "accepted",
        "run": "r-1",
        "stage": "architecture",
        "attempt": 1,
        "date": "2025-03-01",
        "tags": ["events"],
    }
    assert path.read_text(encoding="utf-8").endswith("---\n" + DESIGN)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_numbers_follow_the_highest_existing_one(tmp_path: Path) -> None:
    (tmp_path / "0007-older.md").write_text("# Older\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("# Not numbered\n", encoding="utf-8")
    first = write_decision(tmp_path, record(run_id="r-1"))
    second = write_decision(tmp_path, record(run_id="r-2", title="Use Redis: for counters"))
    assert (first.name, second.name) == (
        "0008-use-an-outbox-for-order-events.md",
        "0009-use-redis-for-counters.md",
    )
    assert front(second)["title"] == "Use Redis: for counters"  # YAML-quoted as needed


def test_a_number_taken_meanwhile_is_skipped(tmp_path: Path, monkeypatch: Any) -> None:
    """Another process links 0001 between our listing and our create: we take 0002."""
    real_link = os.link
    taken = tmp_path / "0001-use-an-outbox-for-order-events.md"

    def racing_link(src: Any, dst: Any) -> None:
        if Path(dst) == taken and not taken.exists():
            taken.write_text("---\nrun: r-other\nstage: x\n---\n# Theirs\n", encoding="utf-8")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    path = write_decision(tmp_path, record())
    assert path.name == "0002-use-an-outbox-for-order-events.md"
    assert "Theirs" in taken.read_text(encoding="utf-8")


def test_a_rework_rewrites_the_same_file_and_a_repeat_changes_nothing(tmp_path: Path) -> None:
    first = write_decision(tmp_path, record())
    again = write_decision(tmp_path, record(body="# changed but same attempt\n"))
    rework = write_decision(
        tmp_path, record(attempt=2, title="Use a transactional outbox", body="# v2\n")
    )
    assert again == first == rework
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    data = front(rework)
    assert (data["attempt"], data["title"], data["id"]) == (
        2,
        "Use a transactional outbox",
        "decisions/0001-use-an-outbox-for-order-events",
    )
    assert rework.read_text(encoding="utf-8").endswith("---\n# v2\n")


# -- the recorder on a real engine -------------------------------------------------------


@dataclass
class Env:
    settings: Settings
    store: Store
    index: KnowledgeIndex
    recorder: KnowledgeRecorder
    service: Service
    scheduler: Scheduler


class ScriptedRunner:
    """Passes every stage; the architecture stage's outputs and status are set per test."""

    name = "scripted"

    def __init__(self, outputs: dict[str, Any], status: AttemptStatus = "passed") -> None:
        self.outputs = outputs
        self.status = status

    async def run(self, request: AttemptRequest) -> AttemptResult:
        await anyio.lowlevel.checkpoint()
        if request.stage.id == "architecture":
            return AttemptResult(
                status=self.status,
                artifacts={"notes": "scratch notes", "design": DESIGN},
                outputs=self.outputs,
                runner="scripted",
            )
        return AttemptResult(
            status="passed", artifacts={"review": "# Review\nLooks right."}, runner="scripted"
        )


@asynccontextmanager
async def env_for(tmp_path: Path, runner: ScriptedRunner) -> AsyncIterator[Env]:
    root = tmp_path / "project"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "design_review.yaml").write_text(
        textwrap.dedent(TEMPLATE), encoding="utf-8"
    )
    settings = load_settings(root, runner="offline")
    store = await Store.open(settings.db_path)
    try:
        index = KnowledgeIndex(store, settings)
        recorder = KnowledgeRecorder(store, index, settings)
        scheduler = Scheduler(store, runner, sink=recorder.sink, poll_interval=0.05)
        yield Env(settings, store, index, recorder, Service(settings, store), scheduler)
    finally:
        await store.close()


async def run_to_end(env: Env, task: str = "Publish order events reliably") -> str:
    state = await env.service.start_run("design_review", task)
    with anyio.fail_after(20):
        await env.scheduler.drive(state.run_id, until="terminal")
    return state.run_id


async def test_a_marked_decision_is_written_indexed_and_found(tmp_path: Path) -> None:
    decision = {"title": "Outbox for order events", "status": "accepted", "tags": ["events"]}
    async with env_for(tmp_path, ScriptedRunner({"decision": decision})) as env:
        run_id = await run_to_end(env)
        assert env.recorder.pending == 2  # queued by the sink; nothing done yet
        await env.recorder.drain()
        hits = await env.index.search("outbox order events", types=["decision"], mode="bm25")
        artifacts = await env.index.search("review looks right", types=["artifact"], mode="bm25")
        written = env.recorder.written

    files = sorted(decisions_dir(env.settings).iterdir())
    assert (
        [p.name for p in files] == ["0001-outbox-for-order-events.md"] == [p.name for p in written]
    )
    data = front(files[0])
    assert (data["run"], data["stage"], data["status"], data["tags"]) == (
        run_id,
        "architecture",
        "accepted",
        ["events"],
    )
    assert files[0].read_text(encoding="utf-8").endswith(DESIGN)  # the first produces name
    assert [h.doc_id for h in hits] == ["decisions/0001-outbox-for-order-events"]
    assert hits[0].path == ".stageflow/knowledge/decisions/0001-outbox-for-order-events.md"
    assert [(h.doc_id, h.run_id, h.stage) for h in artifacts] == [
        (f"run/{run_id}/review/review", run_id, "review")
    ]


async def test_the_title_falls_back_to_the_artifacts_first_heading(tmp_path: Path) -> None:
    async with env_for(tmp_path, ScriptedRunner({"decision": True})) as env:
        await run_to_end(env)
        await env.recorder.drain()
    files = [p.name for p in decisions_dir(env.settings).iterdir()]
    assert files == ["0001-use-an-outbox-for-order-events.md"]


@pytest.mark.parametrize(
    ("outputs", "status"),
    [({}, "passed"), ({"decision": False}, "passed"), ({"decision": True}, "failed")],
)
async def test_no_file_without_a_passed_attempt_marking_a_decision(
    tmp_path: Path, outputs: dict[str, Any], status: AttemptStatus
) -> None:
    async with env_for(tmp_path, ScriptedRunner(outputs, status)) as env:
        state = await env.service.start_run("design_review", "Publish order events")
        with anyio.fail_after(20):
            await env.scheduler.drive(state.run_id, until="idle")
        await env.recorder.drain()
        indexed = await env.index.search("outbox relay", types=["artifact"], mode="bm25")
    assert not decisions_dir(env.settings).exists()
    # every finished attempt's artifacts are indexed, failed ones too
    assert f"run/{state.run_id}/architecture/design" in {h.doc_id for h in indexed}


async def test_the_background_recorder_works_while_runs_go_on(tmp_path: Path) -> None:
    async with env_for(tmp_path, ScriptedRunner({"decision": "Outbox"})) as env:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(env.recorder.run, stop)
            await run_to_end(env)
            with anyio.fail_after(10):
                while True:  # the recorder runs in the background: poll it, bounded
                    if env.recorder.written:
                        break
                    await anyio.sleep(0.01)
            stop.set()
        assert env.recorder.pending == 0
    assert [p.name for p in env.recorder.written] == ["0001-outbox.md"]


async def test_two_processes_serving_one_project_record_a_decision_once(tmp_path: Path) -> None:
    async with env_for(tmp_path, ScriptedRunner({"decision": "Outbox"})) as env:
        other_store = await Store.open(env.settings.db_path)  # a second process's connection
        try:
            other_index = KnowledgeIndex(other_store, env.settings)
            other = KnowledgeRecorder(other_store, other_index, env.settings)
            schedulers = [
                env.scheduler,
                Scheduler(
                    other_store,
                    ScriptedRunner({"decision": "Outbox"}),
                    sink=other.sink,
                    poll_interval=0.05,
                ),
            ]
            state = await env.service.start_run("design_review", "Publish order events")
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                for scheduler in schedulers:  # both adopt whatever active run they can get
                    tg.start_soon(scheduler.serve, stop)
                with anyio.fail_after(20):
                    while True:
                        if (await env.service.view(state.run_id)).status == "completed":
                            break
                        await anyio.sleep(0.02)
                stop.set()
            await env.recorder.drain()
            await other.drain()
            written = [*env.recorder.written, *other.written]
        finally:
            await other_store.close()
    assert [p.name for p in written] == ["0001-outbox.md"]
    assert [p.name for p in decisions_dir(env.settings).iterdir()] == ["0001-outbox.md"]


async def test_what_is_queued_is_still_recorded_when_the_server_stops(tmp_path: Path) -> None:
    async with env_for(tmp_path, ScriptedRunner({"decision": "Outbox"})) as env:
        await run_to_end(env)  # two finished attempts queued; nothing recorded yet
        async with anyio.create_task_group() as tg:
            await tg.start(env.recorder.run, anyio.Event())
            tg.cancel_scope.cancel()  # the lifespan ends: cancelled, not stopped
        assert env.recorder.pending == 0
    assert [p.name for p in env.recorder.written] == ["0001-outbox.md"]
