"""The index over real files: rebuild, incremental sync, watcher updates, artifacts, search."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stageflow.config import Settings, load_settings
from stageflow.errors import NotFound
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store import Store
from tests.knowledge.conftest import WriteFile
from tests.knowledge.test_query import HOSTILE

K = ".stageflow/knowledge"
RETRY = """\
---
title: Retry with backoff
type: pattern
tags: [resilience, http]
---
# Retry with backoff

## When

Retry transient failures such as timeouts and 503 responses.

## How

Exponential backoff with full jitter, at most five attempts.
"""
LOGGING = "# Logging\n\n## Levels\n\nUse INFO for business events and ERROR for failures.\n"
ADR = """\
# 2. Use PostgreSQL

Date: 2021-03-09

## Status

Accepted

## Context

We need a relational database with transactions.

## Decision

We will use PostgreSQL for new services.
"""


async def _ids(index: KnowledgeIndex, query: str, **filters: list[str]) -> list[str]:
    # BM25's own behaviour: exactly the documents that contain the words
    return [h.doc_id for h in await index.search(query, mode="bm25", **filters)]  # type: ignore[arg-type]


def _touch_later(path: Path) -> None:
    """Move the file's mtime forward without changing it (a save of the same content)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.mark.anyio
async def test_reindex_indexes_every_file_and_search_returns_located_snippets(
    index: KnowledgeIndex, write: WriteFile
) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    write(f"{K}/guidelines/logging.md", LOGGING)
    report = await index.reindex()
    assert (report.added, report.updated, report.removed, report.errors) == (2, 0, 0, [])
    assert sorted(report.changed_ids) == ["guidelines/logging", "patterns/retry"]
    hits = await index.search("exponential jitter", mode="bm25")
    assert len(hits) == 1
    hit = hits[0]
    assert (hit.doc_id, hit.title, hit.type, hit.heading) == (
        "patterns/retry",
        "Retry with backoff",
        "pattern",
        "How",
    )
    assert hit.path == f"{K}/patterns/retry.md"
    assert hit.tags == ("resilience", "http")
    lines = RETRY.split("\n")
    assert lines[hit.line_start - 1] == "## How"
    assert lines[hit.line_end - 1].startswith("Exponential backoff")
    assert hit.snippet == "[Exponential] backoff with full [jitter], at most five attempts."
    assert hit.score > 0
    section = await index.section(hit.doc_id, hit.section)
    assert section.text == "Exponential backoff with full jitter, at most five attempts."


@pytest.mark.anyio
async def test_get_returns_the_document_and_an_unknown_id_lists_similar_ones(
    index: KnowledgeIndex, write: WriteFile
) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    write(f"{K}/patterns/outbox.md", "# Outbox\n\nWrite events to a table.\n")
    await index.reindex()
    doc = await index.get("patterns/retry")
    assert (doc.title, doc.type, doc.tags, doc.body_line) == (
        "Retry with backoff",
        "pattern",
        ("resilience", "http"),
        6,
    )
    assert doc.body == RETRY.split("---\n", 2)[2]
    with pytest.raises(NotFound) as info:
        await index.get("patterns/retyr")
    assert (info.value.kind, info.value.name) == ("knowledge document", "patterns/retyr")
    assert info.value.known[0] == "patterns/retry"
    with pytest.raises(NotFound) as missing:
        await index.section("patterns/retry", 99)
    assert missing.value.kind == "knowledge section"


@pytest.mark.anyio
async def test_sync_rereads_only_changed_files_and_removes_deleted_ones(
    index: KnowledgeIndex, write: WriteFile
) -> None:
    retry = write(f"{K}/patterns/retry.md", RETRY)
    logging_file = write(f"{K}/guidelines/logging.md", LOGGING)
    first = await index.sync()
    assert (first.added, first.unchanged) == (2, 0)
    again = await index.sync()
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 2)
    _touch_later(retry)  # same bytes, new mtime: hashed, not re-indexed
    touched = await index.sync()
    assert (touched.updated, touched.unchanged) == (0, 2)
    retry.write_text(RETRY.replace("five attempts", "three attempts"), encoding="utf-8")
    _touch_later(retry)
    logging_file.unlink()
    changed = await index.sync()
    assert (changed.added, changed.updated, changed.removed, changed.unchanged) == (0, 1, 1, 0)
    assert changed.changed_ids == ("patterns/retry",)
    assert changed.removed_ids == ("guidelines/logging",)
    assert await _ids(index, "three attempts") == ["patterns/retry"]
    assert await _ids(index, "business events") == []


@pytest.mark.anyio
async def test_update_paths_handles_edit_add_delete_and_rename(
    index: KnowledgeIndex, write: WriteFile, project: Path
) -> None:
    retry = write(f"{K}/patterns/retry.md", RETRY)
    await index.reindex()
    added = write(f"{K}/guidelines/logging.md", LOGGING)
    report = await index.update_paths([added])
    assert (report.added, report.updated, report.removed) == (1, 0, 0)
    renamed = project / K / "patterns/retries.md"
    retry.rename(renamed)
    report = await index.update_paths([retry, renamed])
    assert (report.added, report.removed) == (1, 1)
    assert await _ids(index, "jitter") == ["patterns/retries"]
    added.unlink()
    report = await index.update_paths([added])
    assert report.removed_ids == ("guidelines/logging",)
    unrelated = write("src/app.py", "print('hi')\n")
    report = await index.update_paths([unrelated, project.parent / "outside.md"])
    assert (report.added, report.updated, report.removed, report.errors) == (0, 0, 0, [])


@pytest.mark.anyio
async def test_a_renamed_file_with_an_explicit_id_keeps_its_id(
    index: KnowledgeIndex, write: WriteFile, project: Path
) -> None:
    old = write(f"{K}/a.md", "---\nid: conventions/naming\n---\n# Naming\n\nkebab-case names\n")
    await index.reindex()
    new = project / K / "b.md"
    old.rename(new)
    report = await index.update_paths([old, new])
    assert (report.added, report.updated, report.removed) == (0, 1, 0)
    assert (await index.get("conventions/naming")).path == f"{K}/b.md"


@pytest.mark.anyio
async def test_update_paths_on_a_folder_reads_and_removes_the_files_under_it(
    index: KnowledgeIndex, write: WriteFile, project: Path
) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    write(f"{K}/patterns/outbox.md", "# Outbox\n\nEvents go into a table first.\n")
    write(f"{K}/guidelines/logging.md", LOGGING)
    report = await index.update_paths([project / K / "patterns"])
    assert sorted(report.changed_ids) == ["patterns/outbox", "patterns/retry"]
    for path in (project / K / "patterns").iterdir():
        path.unlink()
    (project / K / "patterns").rmdir()
    report = await index.update_paths([project / K / "patterns"])
    assert sorted(report.removed_ids) == ["patterns/outbox", "patterns/retry"]
    report = await index.update_paths([project])  # the whole project
    assert report.changed_ids == ("guidelines/logging",)
    (project / K / "guidelines/logging.md").unlink()
    report = await index.update_paths([project])
    assert report.removed_ids == ("guidelines/logging",)


@pytest.mark.anyio
async def test_a_duplicate_id_is_reported_and_the_file_is_indexed_once_the_id_is_free(
    index: KnowledgeIndex, write: WriteFile
) -> None:
    first = write(f"{K}/a.md", "---\nid: shared\ntitle: First\n---\nalpha text\n")
    write(f"{K}/b.md", "---\nid: shared\ntitle: Second\n---\nbeta text\n")
    report = await index.reindex()
    assert report.added == 1
    assert len(report.errors) == 1
    problem = report.errors[0]
    assert problem.file == f"{K}/b.md"
    assert problem.message.startswith(f"knowledge id 'shared' is already used by {K}/a.md")
    assert (await index.get("shared")).title == "First"
    first.unlink()
    report = await index.update_paths([first])
    assert (report.updated, report.removed, report.errors) == (1, 0, [])
    assert (await index.get("shared")).title == "Second"
    assert await _ids(index, "beta") == ["shared"]


@pytest.mark.anyio
async def test_configured_globs_and_kogral_are_indexed_and_adrs_keep_their_status(
    store: Store, project: Path, write: WriteFile
) -> None:
    write(".stageflow/config.toml", '[knowledge]\npaths = ["docs/adr/**/*.md"]\n')
    write("docs/adr/0002-use-postgresql.md", ADR)
    write(".kogral/notes/profiling.md", "# Profiling\n\nUse py-spy for flame graphs.\n")
    index = KnowledgeIndex(store, load_settings(project))
    await index.reindex()
    hits = await index.search("which database for new services", types=["adr"], mode="bm25")
    assert [(h.doc_id, h.status, h.type) for h in hits] == [
        ("docs/adr/0002-use-postgresql", "accepted", "adr")
    ]
    assert await _ids(index, "flame graphs") == ["notes/profiling"]


@pytest.mark.anyio
async def test_filters_by_type_and_tag_and_an_empty_query_lists_the_filtered_documents(
    index: KnowledgeIndex, write: WriteFile
) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    write(f"{K}/guidelines/logging.md", LOGGING)
    write(f"{K}/guidelines/http.md", "---\ntags: [http]\n---\n# HTTP\n\nRetry idempotent calls.\n")
    await index.reindex()
    assert sorted(await _ids(index, "retry")) == ["guidelines/http", "patterns/retry"]
    assert await _ids(index, "retry", types=["guideline"]) == ["guidelines/http"]
    assert sorted(await _ids(index, "retry", tags=["HTTP"])) == [
        "guidelines/http",
        "patterns/retry",
    ]
    assert await _ids(index, "retry", tags=["resilience"]) == ["patterns/retry"]
    assert await _ids(index, "retry", types=["adr"]) == []
    assert await _ids(index, "", types=["guideline"]) == ["guidelines/http", "guidelines/logging"]
    assert await _ids(index, "") == []


@pytest.mark.anyio
async def test_limit_and_sections_per_doc(index: KnowledgeIndex, write: WriteFile) -> None:
    for i in range(15):
        write(
            f"{K}/notes/n{i:02d}.md", f"# Note {i}\n\n## One\n\ncache keys\n\n## Two\n\ncache ttl\n"
        )
    await index.reindex()
    assert len(await index.search("cache", limit=3, mode="bm25")) == 3
    assert (
        len(await index.search("cache", limit=500, mode="bm25")) == 15
    )  # capped at one per document
    pairs = await index.search("cache", limit=4, sections_per_doc=2, mode="bm25")
    assert len({h.doc_id for h in pairs}) == 2
    assert sorted(h.heading for h in pairs) == ["One", "One", "Two", "Two"]


@pytest.mark.anyio
async def test_hostile_queries_never_raise(index: KnowledgeIndex, write: WriteFile) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    await index.reindex()
    for query in HOSTILE:
        hits = await index.search(query, types=["pattern", "x' OR 1=1 --"], tags=['"', "("])
        assert isinstance(hits, list)
        await index.search(query)
    assert await _ids(index, 'retry" OR (NOT') == ["patterns/retry"]


@pytest.mark.anyio
async def test_artifacts_are_indexed_found_and_filtered_and_the_newest_version_wins(
    index: KnowledgeIndex, write: WriteFile
) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    await index.reindex()
    await index.index_artifact(
        run_id="r-1",
        stage="architecture",
        name="design",
        version=1,
        content="# Rate limiter design\n\nA token bucket per API key in Redis.\n",
        task="Add rate limiting to the public API",
    )
    await index.index_artifact(
        run_id="r-1",
        stage="architecture",
        name="design",
        version=2,
        content="# Rate limiter design\n\nA sliding window per API key in Redis.\n",
        task="Add rate limiting to the public API",
    )
    await index.index_artifact(  # arrives late: ignored
        run_id="r-1",
        stage="architecture",
        name="design",
        version=1,
        content="# Old\n\nobsolete token bucket\n",
        task="Add rate limiting to the public API",
    )
    hits = await index.search("how did we add rate limiting last time", mode="bm25")
    assert hits[0].doc_id == "run/r-1/architecture/design"
    assert (hits[0].type, hits[0].run_id, hits[0].stage, hits[0].path) == (
        "artifact",
        "r-1",
        "architecture",
        None,
    )
    assert await _ids(index, "sliding window", types=["artifact"]) == [
        "run/r-1/architecture/design"
    ]
    assert await _ids(index, "obsolete token bucket") == []
    assert await _ids(index, "retry", types=["artifact"]) == []
    doc = await index.get("run/r-1/architecture/design")
    assert doc.title == "Rate limiter design"
    # a rebuild from files keeps artifacts
    report = await index.reindex()
    assert report.removed == 0
    assert await _ids(index, "sliding window") == ["run/r-1/architecture/design"]


@pytest.mark.anyio
async def test_two_indexes_on_one_database_see_each_others_changes(
    store: Store, settings: Settings, write: WriteFile
) -> None:
    write(f"{K}/patterns/retry.md", RETRY)
    async with await Store.open(settings.db_path) as other_store:
        writer = KnowledgeIndex(store, settings)
        reader = KnowledgeIndex(other_store, settings)
        await writer.sync()
        assert await _ids(reader, "jitter") == ["patterns/retry"]
        assert (await reader.sync()).unchanged == 1  # the file state is shared too


@pytest.mark.anyio
async def test_a_non_utf8_file_is_indexed_with_a_problem(
    index: KnowledgeIndex, project: Path
) -> None:
    path = project / K / "latin1.md"
    path.write_bytes("# Caf\xe9 notes\n\nespresso machine\n".encode("latin-1"))
    report = await index.reindex()
    assert report.added == 1
    assert [p.message for p in report.errors] == ["not valid UTF-8; bad bytes replaced"]
    assert await _ids(index, "espresso") == ["latin1"]
