"""The retrieval set: 60 questions over the corpus of 52 documents (guidelines, patterns, ADRs
in adr-tools and MADR formats, notes, stage decisions). MRR and recall@5 must not regress.

Run with ``-s`` to see the figures and the queries that miss rank 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import load_settings
from stageflow.knowledge.index import KnowledgeIndex, Weights
from stageflow.store import Store
from tests.knowledge.retrieval import CORPUS, build_project, evaluate, load_cases

# Pinned slightly under what the tuned index achieves (MRR 0.975, recall@5 0.989 when set).
MRR_FLOOR = 0.95
RECALL_FLOOR = 0.97


def test_the_set_is_big_enough_and_names_only_documents_that_exist(tmp_path: Path) -> None:
    cases = load_cases()
    docs = [p for p in CORPUS.rglob("*.md")]
    assert len(cases) >= 30
    assert len(docs) >= 40
    assert {c.kind for c in cases} == {"direct", "synonym", "tag", "status", "filter"}


@pytest.mark.anyio
async def test_mrr_and_recall_at_5_stay_above_their_floors(tmp_path: Path) -> None:
    settings = load_settings(build_project(tmp_path))
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        report = await index.reindex()
        assert report.errors == []
        assert report.added == len(list(CORPUS.rglob("*.md")))
        cases = load_cases()
        known = set(await store.knowledge.doc_ids())
        assert {e for c in cases for e in c.expected} <= known
        metrics = await evaluate(index, cases)
        uniform = await evaluate(
            KnowledgeIndex(store, settings, weights=Weights(1, 1, 1, 1, 1)), cases
        )
    print()
    print(metrics.render())
    print(f"(all column weights 1: MRR {uniform.mrr:.3f}, recall@5 {uniform.recall_at_5:.3f})")
    assert metrics.mrr >= MRR_FLOOR
    assert metrics.recall_at_5 >= RECALL_FLOOR
