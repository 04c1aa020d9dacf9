"""The knowledge tables: one transaction per change, ids owned by one source, FTS rows follow
their document."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from stageflow.store import Store
from stageflow.store.knowledge import (
    KnowledgeChange,
    KnowledgeDocRow,
    KnowledgeFileRow,
    KnowledgeSectionRow,
    Refusal,
)

RANK = "bm25(10.0, 6.0, 3.0, 4.0, 1.0)"


def doc(
    doc_id: str,
    *,
    path: str | None = "k/a.md",
    title: str = "Title",
    version: int | None = None,
    tags: tuple[str, ...] = ("api",),
) -> KnowledgeDocRow:
    return KnowledgeDocRow(
        doc_id=doc_id,
        title=title,
        type="note",
        tags=tags,
        status=None,
        path=path,
        body="body",
        body_line=1,
        version=version,
    )


def sections(*texts: str) -> list[KnowledgeSectionRow]:
    return [KnowledgeSectionRow(f"H{i}", i + 1, i + 1, t) for i, t in enumerate(texts)]


def fts_rows(db_path: Path) -> int:
    with closing(sqlite3.connect(db_path)) as db:
        return int(db.execute("SELECT count(*) FROM knowledge_fts").fetchone()[0])


@pytest.mark.anyio
async def test_put_search_and_replace_keep_one_set_of_sections(store: Store, db_path: Path) -> None:
    ks = store.knowledge
    result = await ks.apply(
        KnowledgeChange(put=[(doc("a"), sections("alpha one", "alpha two"))]), at=1.0
    )
    assert (result.added, result.updated, result.removed) == (("a",), (), ())
    hits = await ks.search('"alpha"', rank=RANK)
    assert [(h.doc_id, h.section, h.heading) for h in hits] == [("a", 0, "H0"), ("a", 1, "H1")]
    result = await ks.apply(KnowledgeChange(put=[(doc("a"), sections("beta"))]), at=2.0)
    assert result.updated == ("a",)
    assert await ks.search('"alpha"', rank=RANK) == []
    assert fts_rows(db_path) == 1
    assert await ks.counts() == (1, 1)


@pytest.mark.anyio
async def test_deleting_a_document_drops_its_sections_and_tags(store: Store, db_path: Path) -> None:
    ks = store.knowledge
    await ks.apply(
        KnowledgeChange(
            put=[(doc("a"), sections("x y")), (doc("b", path="k/b.md"), sections("x z"))]
        ),
        at=1.0,
    )
    result = await ks.apply(KnowledgeChange(delete_paths=["k/a.md"]), at=2.0)
    assert result.removed == ("a",)
    assert [h.doc_id for h in await ks.search('"x"', rank=RANK)] == ["b"]
    assert fts_rows(db_path) == 1
    assert [h.doc_id for h in await ks.list_documents(tags=["api"])] == ["b"]


@pytest.mark.anyio
async def test_an_id_held_by_another_source_is_refused(store: Store) -> None:
    ks = store.knowledge
    await ks.apply(KnowledgeChange(put=[(doc("a"), sections("x"))]), at=1.0)
    result = await ks.apply(
        KnowledgeChange(
            put=[
                (doc("a", path="k/other.md"), sections("y")),
                (doc("c", path="k/c.md"), sections("z")),
                (doc("c", path="k/d.md"), sections("w")),
            ]
        ),
        at=2.0,
    )
    assert result.added == ("c",)
    assert result.refused == (
        Refusal("a", "k/other.md", "k/a.md"),
        Refusal("c", "k/d.md", "k/c.md"),
    )
    got = await ks.get_document("a")
    assert got is not None and got.path == "k/a.md"


@pytest.mark.anyio
async def test_an_older_artifact_version_never_replaces_a_newer_one(store: Store) -> None:
    ks = store.knowledge
    art = "run/r/s/n"
    await ks.apply(KnowledgeChange(put=[(doc(art, path=None, version=2), sections("v2"))]), at=1)
    result = await ks.apply(
        KnowledgeChange(put=[(doc(art, path=None, version=1), sections("v1"))]), at=2
    )
    assert (result.stale, result.updated) == ((art,), ())
    section = await ks.get_section(art, 0)
    assert section is not None and section.text == "v2"


@pytest.mark.anyio
async def test_a_failing_change_leaves_nothing_behind(store: Store) -> None:
    ks = store.knowledge
    await ks.apply(KnowledgeChange(put=[(doc("a"), sections("x"))]), at=1.0)
    broken = KnowledgeDocRow(
        doc_id="b", title=None, type="note", tags=(), status=None,  # type: ignore[arg-type]
        path="k/b.md", body="", body_line=1,
    )  # fmt: skip
    change = KnowledgeChange(
        put=[(broken, sections("y"))],
        delete_paths=["k/a.md"],
        files=[KnowledgeFileRow("k/b.md", "knowledge", "b", 1, 1, "h")],
    )
    with pytest.raises(sqlite3.IntegrityError):
        await ks.apply(change, at=2.0)
    assert await ks.get_document("a") is not None
    assert await ks.files() == {}


@pytest.mark.anyio
async def test_file_rows_can_be_read_by_path_and_by_folder(store: Store) -> None:
    ks = store.knowledge
    rows = [
        KnowledgeFileRow("k/a.md", "knowledge", "a", 1, 10, "h1"),
        KnowledgeFileRow("k/sub/b.md", "knowledge", "b", 2, 20, "h2"),
        KnowledgeFileRow("kx/c.md", "knowledge", "c", 3, 30, "h3"),
    ]
    await ks.apply(KnowledgeChange(files=rows), at=1.0)
    assert sorted(await ks.files(under="k")) == ["k/a.md", "k/sub/b.md"]
    assert list(await ks.files(paths=["kx/c.md", "nope.md"])) == ["kx/c.md"]
    await ks.apply(KnowledgeChange(forget_files=["k/a.md"]), at=2.0)
    assert sorted(await ks.files()) == ["k/sub/b.md", "kx/c.md"]


@pytest.mark.anyio
async def test_match_counts_and_snippets(store: Store) -> None:
    ks = store.knowledge
    await ks.apply(
        KnowledgeChange(put=[(doc("a"), sections("common rare", "common", "common"))]), at=1.0
    )
    assert await ks.match_counts(['"common"', '"rare"', '"absent"'], cap=2) == [2, 1, 0]
    hits = await ks.search('"rare"', rank=RANK)
    snippets = await ks.snippets('"rare"', [h.rowid for h in hits])
    assert list(snippets.values()) == ["common [rare]"]
