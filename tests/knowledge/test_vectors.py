"""Vectors kept with the index: only changed sections are embedded, each vector is tagged with
its model (a new model re-embeds), other processes' changes are seen, databases from before the
vectors get their section keys, and hybrid hits say which rankings found them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import load_settings
from stageflow.knowledge.hybrid import confidence, fuse, rrf_k
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store import Store
from stageflow.store.connection import fetch_all
from tests.knowledge import counting_embedder
from tests.knowledge.conftest import WriteFile, config

pytestmark = pytest.mark.anyio

PLUGIN = '[knowledge]\nembeddings = "tests.knowledge.counting_embedder:make"\n'

GUIDE = """\
---
title: Releases
tags: [release]
---
# Releases

## Versions
Tags follow semantic versioning, made by the pipeline.

## Rollback
Redeploy the previous build from the pipeline.

## Hotfix
A labelled pull request may ship outside the window.
"""

OTHER = """\
# Caching

Entries expire after their TTL; invalidate on write.
"""


@pytest.fixture(autouse=True)
def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    counting_embedder.CALLS.clear()
    monkeypatch.setitem(counting_embedder.MODEL, "name", "counting-v1")
    return counting_embedder.CALLS


async def test_only_changed_sections_are_embedded_again(
    project: Path, write: WriteFile, counting: list[str]
) -> None:
    config(project, PLUGIN)
    path = write(".stageflow/knowledge/releases.md", GUIDE)
    write(".stageflow/knowledge/caching.md", OTHER)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        await index.reindex()
        first = await index.refresh_vectors()
        assert first is not None and first.embedded == 4 and first.reused == 0
        assert first.model == "counting-v1/text1"
        path.write_text(GUIDE.replace("previous build", "last good build"), encoding="utf-8")
        await index.update_paths([path])  # the document is stored again under new rowids
        counting.clear()
        second = await index.refresh_vectors()
        assert second is not None and (second.embedded, second.reused) == (1, 3)
        assert len(counting) == 1 and "last good build" in counting[0]
        counting.clear()
        hits = await index.search("last good build", mode="vector")
        assert counting == ["last good build"]  # the query only: nothing else changed
        assert hits[0].doc_id == "releases" and hits[0].heading == "Rollback"
        conn = store.knowledge._db.connection()
        models = await fetch_all(conn, "SELECT DISTINCT model FROM knowledge_embeddings")
        assert models == [("counting-v1/text1",)]
        assert await store.knowledge.vectors.count("counting-v1/text1") == 4  # pruned the old


async def test_a_new_model_embeds_everything_again_and_keeps_no_old_vector(
    project: Path, write: WriteFile, counting: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config(project, PLUGIN)
    write(".stageflow/knowledge/releases.md", GUIDE)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        await KnowledgeIndex(store, settings).reindex()
        assert (await KnowledgeIndex(store, settings).refresh_vectors()).embedded == 3  # type: ignore[union-attr]
        monkeypatch.setitem(counting_embedder.MODEL, "name", "counting-v2")
        fresh = KnowledgeIndex(store, settings)
        counting.clear()
        report = await fresh.refresh_vectors()
        assert report is not None and (report.model, report.embedded) == ("counting-v2/text1", 3)
        assert len(counting) == 3
        assert await store.knowledge.vectors.count("counting-v1/text1") == 0


async def test_another_process_sees_changes_through_the_generation(
    project: Path, write: WriteFile, counting: list[str]
) -> None:
    config(project, PLUGIN)
    write(".stageflow/knowledge/releases.md", GUIDE)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as one, await Store.open(settings.db_path) as two:
        writer, reader = KnowledgeIndex(one, settings), KnowledgeIndex(two, settings)
        await writer.reindex()
        assert [h.doc_id for h in await reader.search("ttl invalidate", mode="vector")] != [
            "caching"
        ]
        write(".stageflow/knowledge/caching.md", OTHER)
        await writer.sync()
        hits = await reader.search("ttl invalidate", mode="vector")
        assert hits[0].doc_id == "caching" and hits[0].found_by == ("vector",)


async def test_sections_indexed_before_the_vectors_get_their_keys(
    project: Path, write: WriteFile
) -> None:
    config(project, PLUGIN)
    write(".stageflow/knowledge/releases.md", GUIDE)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        await index.reindex()
        async with store.knowledge._db.write() as conn:  # as a database from migration 3 was
            await conn.execute("DELETE FROM knowledge_section_keys")
        hits = await index.search("rollback previous build", mode="vector")
        assert hits[0].doc_id == "releases"
        conn = store.knowledge._db.connection()
        assert (await fetch_all(conn, "SELECT count(*) FROM knowledge_section_keys"))[0][0] == 3


async def test_hybrid_hits_say_which_rankings_found_them_and_filters_hold(
    project: Path, write: WriteFile
) -> None:
    write(".stageflow/knowledge/guidelines/privacy.md", PRIVACY)
    write(".stageflow/knowledge/patterns/caching.md", "# Caching\n\nEntries expire after a TTL.\n")
    settings = load_settings(project)  # WordLlama, the default
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        await index.reindex()
        found = await index.find("which records does the system forget after a month")
        assert found.mode == "hybrid"
        assert found.hits[0].doc_id == "guidelines/privacy"
        assert found.hits[0].found_by == ("vector",)  # no word of the question is in it
        assert found.hits[0].snippet.startswith("Access logs are purged")
        both = await index.find("access logs purged")
        assert both.hits[0].found_by == ("bm25", "vector")
        assert "[purged]" in both.hits[0].snippet
        typed = await index.search("records forget month", types=["pattern"], mode="vector")
        assert {h.type for h in typed} <= {"pattern"}
        for query in ['"', "((((", "NEAR(a b) AND *", "x" * 10_000, "ü🚀"]:
            await index.find(query, mode="hybrid")


PRIVACY = """\
---
title: Personal data
---
# Personal data

## Retention
Access logs are purged after 30 days by the nightly job; tickets are kept two years.
"""


def test_fusion_weights_bm25_hits_by_coverage_and_names_the_rankings() -> None:
    fused = fuse([(1, 1.0), (2, 0.1)], [3, 2], k=5.0)
    assert [(d, by) for d, _, by in fused] == [
        (1, ("bm25",)),
        (3, ("vector",)),
        (2, ("bm25", "vector")),
    ]
    assert fused[0][1] == pytest.approx(1 / 6)
    assert fused[2][1] == pytest.approx(0.1 / 7 + 1 / 7)


def test_a_bm25_ranking_of_incidental_matches_gives_way_to_the_vector_ranking() -> None:
    # BM25's best document covers a fifth of the question: its ranking counts a fifth
    bm25 = [(1, 0.2), (2, 0.1)]
    sure = confidence([w for _, w in bm25])
    assert sure == pytest.approx(0.2)
    fused = fuse([(d, w * sure) for d, w in bm25], [3, 1], k=5.0)
    assert [d for d, _, _ in fused] == [3, 1, 2]
    # a document that matches the whole question: BM25 counts fully, as plain weighted RRF
    assert confidence([1.0, 0.3]) == 1.0
    assert confidence([]) == 0.0


def test_rrf_k_comes_from_the_config_and_a_bad_value_is_ignored(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config(project, "[knowledge]\nrrf_k = 20\n")
    assert rrf_k(load_settings(project)) == 20.0
    config(project, '[knowledge]\nrrf_k = "big"\n')
    assert rrf_k(load_settings(project)) == 5.0
    assert "knowledge.rrf_k: must be a number above 0" in caplog.text
