"""Artifacts: versioned text written in the same transaction as the events that reference it."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from stageflow import events as ev
from stageflow.errors import InvalidState, NotFound
from stageflow.store import ArtifactMeta, NewArtifact, RunSummary, Store
from tests.store.conftest import new_run, started


def _art(name: str, version: int, content: str, stage: str = "design") -> NewArtifact:
    return NewArtifact(stage=stage, name=name, version=version, content=content, attempt=version)


def _finished(stage: str = "design") -> ev.AttemptFinished:
    return ev.AttemptFinished(stage=stage, attempt=1, outcome="passed")


@pytest.mark.anyio
async def test_artifact_versions_are_stored_and_the_latest_is_the_default(store: Store) -> None:
    await new_run(store)
    await store.append(
        "r-1",
        [_finished()],
        expect_seq=1,
        actor="x",
        at=10.0,
        artifacts=[_art("doc", 1, "first draft")],
    )
    await store.append(
        "r-1",
        [_finished()],
        expect_seq=2,
        actor="x",
        at=20.0,
        artifacts=[_art("doc", 2, "second ✓")],
    )

    latest = await store.get_artifact("r-1", "design", "doc")
    first = await store.get_artifact("r-1", "design", "doc", version=1)

    assert (latest.version, latest.content, latest.attempt, latest.created_at) == (
        2,
        "second ✓",
        2,
        20.0,
    )
    assert latest.size == len("second ✓".encode()) == 10
    assert latest.sha256 == hashlib.sha256("second ✓".encode()).hexdigest()
    assert (first.version, first.content, first.created_at) == (1, "first draft", 10.0)


def test_new_artifact_reports_the_size_and_hash_the_store_records() -> None:
    art = _art("doc", 1, "héllo")
    assert art.size == 6
    assert art.sha256 == hashlib.sha256("héllo".encode()).hexdigest()
    assert art.key == "design/doc@1"


@pytest.mark.anyio
async def test_list_artifacts_orders_by_stage_name_and_version(store: Store) -> None:
    await new_run(store)
    await store.append(
        "r-1",
        [_finished()],
        expect_seq=1,
        actor="x",
        at=5.0,
        artifacts=[
            _art("z", 1, "z1", stage="a"),
            _art("b", 2, "b2", stage="b"),
            _art("b", 1, "b1", stage="b"),
            _art("a", 1, "a1", stage="b"),
        ],
    )
    metas = await store.list_artifacts("r-1")
    assert [(m.stage, m.name, m.version) for m in metas] == [
        ("a", "z", 1),
        ("b", "a", 1),
        ("b", "b", 1),
        ("b", "b", 2),
    ]
    assert metas[0] == ArtifactMeta(
        run_id="r-1",
        stage="a",
        name="z",
        version=1,
        size=2,
        sha256=hashlib.sha256(b"z1").hexdigest(),
        attempt=1,
        created_at=5.0,
    )
    record = await store.get_artifact("r-1", "a", "z")
    assert record.meta == metas[0]


@pytest.mark.anyio
async def test_list_artifacts_of_a_run_without_any_is_empty(store: Store) -> None:
    await new_run(store)
    assert await store.list_artifacts("r-1") == []


@pytest.mark.anyio
async def test_unknown_artifact_lists_the_runs_artifact_names(store: Store) -> None:
    await new_run(store)
    await store.append(
        "r-1",
        [_finished()],
        expect_seq=1,
        actor="x",
        artifacts=[
            _art("design", 1, "d"),
            _art("design", 2, "d2"),
            _art("notes", 1, "n", stage="review"),
        ],
    )

    with pytest.raises(NotFound) as info:
        await store.get_artifact("r-1", "design", "plan")
    assert (info.value.kind, info.value.name) == ("artifact", "design/plan")
    assert info.value.known == ["design/design", "review/notes"]

    with pytest.raises(NotFound) as info:
        await store.get_artifact("r-1", "design", "design", version=3)
    assert (info.value.kind, info.value.name) == ("artifact", "design/design@3")


@pytest.mark.anyio
async def test_artifacts_of_an_unknown_run_raise_run_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        await store.get_artifact("r-404", "design", "doc")
    assert (info.value.kind, info.value.name) == ("run", "r-404")
    with pytest.raises(NotFound) as info:
        await store.list_artifacts("r-404")
    assert info.value.kind == "run"


@pytest.mark.anyio
async def test_a_duplicate_artifact_version_rolls_back_the_whole_append(
    store: Store, db_path: Path
) -> None:
    await new_run(store)
    await store.append(
        "r-1", [_finished()], expect_seq=1, actor="x", artifacts=[_art("doc", 1, "original")]
    )
    before = await store.get_run("r-1")

    with pytest.raises(InvalidState, match=r"artifact design/doc@1 already exists"):
        await store.append(
            "r-1",
            [_finished(), started("next")],
            expect_seq=2,
            actor="x",
            summary=RunSummary(status="completed", spent_usd=1.0, budget_usd=None),
            artifacts=[_art("other", 1, "new"), _art("doc", 1, "replacement")],
        )

    assert await store.get_run("r-1") == before
    assert len(await store.load_events("r-1")) == 2
    assert [(m.name, m.version) for m in await store.list_artifacts("r-1")] == [("doc", 1)]
    assert (await store.get_artifact("r-1", "design", "doc")).content == "original"
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    # the connection is usable and the log continues where it was
    await store.append("r-1", [started("next")], expect_seq=2, actor="x")


@pytest.mark.anyio
async def test_the_same_artifact_version_twice_in_one_append_is_refused(store: Store) -> None:
    await new_run(store)
    with pytest.raises(InvalidState, match="design/doc@1 appears twice"):
        await store.append(
            "r-1",
            [_finished()],
            expect_seq=1,
            actor="x",
            artifacts=[_art("doc", 1, "a"), _art("doc", 1, "b")],
        )
    assert len(await store.load_events("r-1")) == 1


@pytest.mark.anyio
async def test_artifact_heads_returns_the_start_of_every_version_in_one_call(store: Store) -> None:
    await new_run(store)
    await store.append(
        "r-1",
        [_finished()],
        expect_seq=1,
        actor="x",
        artifacts=[_art("doc", 1, "é" * 50), _art("doc", 2, "short")],
    )
    heads = await store.artifact_heads("r-1", 10)
    assert heads == {("design", "doc", 1): "é" * 10, ("design", "doc", 2): "short"}
    assert await store.artifact_heads("r-none", 10) == {}
