"""The retrieval sets: 60 questions over the corpus of 52 documents (guidelines, patterns, ADRs
in adr-tools and MADR formats, notes, stage decisions), 50 paraphrases that share no content
word with their target, and 32 held-out paraphrases under the same rule that nothing was tuned
on. MRR and recall@5 of each search mode must not regress.

Run with ``-s`` to see the figures of bm25, vector and hybrid on the three sets, the queries of
the first two that miss rank 1, and how hybrid moves with ``rrf_k``. The issue's goal for the
paraphrases, hybrid recall@5 of 0.75, is not reached (0.58; docs/architecture.md lists what
was measured).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import load_settings
from stageflow.knowledge.index import KnowledgeIndex, Weights
from stageflow.knowledge.query import query_groups
from stageflow.store import Store
from stageflow.store.connection import fetch_all
from tests.knowledge.retrieval import (
    CORPUS,
    HOLDOUT,
    PARAPHRASES,
    Metrics,
    build_project,
    evaluate,
    load_cases,
)

# Pinned slightly under what the index achieves; the figures it reached when set are in the
# comments (WordLlama l2_supercat 256, SIF 1e-3, rrf_k 5, BM25 weighted by its confidence).
FLOORS = {
    # (set, mode): (MRR floor, recall@5 floor)   reached
    ("existing", "bm25"): (0.95, 0.97),  # 0.975 0.989
    ("existing", "vector"): (0.89, 0.94),  # 0.916 0.967
    ("existing", "hybrid"): (0.96, 0.96),  # 0.975 0.975
    ("paraphrase", "bm25"): (0.0, 0.0),  # 0.000 0.000 (by construction)
    ("paraphrase", "vector"): (0.29, 0.54),  # 0.316 0.580
    ("paraphrase", "hybrid"): (0.29, 0.54),  # 0.313 0.580
    ("holdout", "bm25"): (0.0, 0.0),  # 0.000 0.000 (by construction)
    ("holdout", "vector"): (0.38, 0.53),  # 0.407 0.562
    ("holdout", "hybrid"): (0.38, 0.53),  # 0.407 0.562
}
MODES = ("bm25", "vector", "hybrid")


def test_the_set_is_big_enough_and_names_only_documents_that_exist(tmp_path: Path) -> None:
    cases = load_cases()
    docs = [p for p in CORPUS.rglob("*.md")]
    assert len(cases) >= 30
    assert len(docs) >= 40
    assert {c.kind for c in cases} == {"direct", "synonym", "tag", "status", "filter"}
    paraphrases = load_cases(PARAPHRASES)
    assert len(paraphrases) >= 50
    assert len({e for c in paraphrases for e in c.expected}) >= 45  # most documents, once
    holdout = load_cases(HOLDOUT)
    assert len(holdout) >= 30
    assert len({e for c in holdout for e in c.expected}) >= 30


@pytest.mark.anyio
@pytest.mark.parametrize("path", [PARAPHRASES, HOLDOUT], ids=["paraphrase", "holdout"])
async def test_no_paraphrase_shares_a_searchable_word_with_its_target(
    tmp_path: Path, path: Path
) -> None:
    # Each term BM25 makes of the query (stopwords dropped, synonyms added), stemmed by FTS5
    # itself, must match nothing in the target document: BM25 can find it only by accident.
    settings = load_settings(build_project(tmp_path))
    async with await Store.open(settings.db_path) as store:
        await KnowledgeIndex(store, settings).reindex()
        conn = store.knowledge._db.connection()
        shared = []
        for case in load_cases(path):
            for doc in case.expected:
                rows = await fetch_all(
                    conn, "SELECT doc_rowid FROM knowledge_docs WHERE doc_id = ?", (doc,)
                )
                assert rows, doc
                low, high = rows[0][0] << 20, (rows[0][0] + 1) << 20
                for group in query_groups(case.query):
                    sql = (
                        "SELECT count(*) FROM knowledge_fts WHERE knowledge_fts MATCH ? "
                        "AND rowid >= ? AND rowid < ?"
                    )
                    if (await fetch_all(conn, sql, (group, low, high)))[0][0]:
                        shared.append((case.query, doc, group))
    assert shared == []


@pytest.mark.anyio
async def test_mrr_and_recall_at_5_stay_above_their_floors_in_every_mode(tmp_path: Path) -> None:
    settings = load_settings(build_project(tmp_path))
    sets = {
        "existing": load_cases(),
        "paraphrase": load_cases(PARAPHRASES),
        "holdout": load_cases(HOLDOUT),
    }
    results: dict[tuple[str, str], Metrics] = {}
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        report = await index.reindex()
        assert report.errors == []
        assert report.added == len(list(CORPUS.rglob("*.md")))
        assert index.default_mode == "hybrid"  # the test install has the embeddings extra
        known = set(await store.knowledge.doc_ids())
        assert {e for cases in sets.values() for c in cases for e in c.expected} <= known
        for name, cases in sets.items():
            for mode in MODES:
                results[name, mode] = await evaluate(index, cases, mode)  # type: ignore[arg-type]
        uniform = await evaluate(
            KnowledgeIndex(store, settings, weights=Weights(1, 1, 1, 1, 1)),
            sets["existing"],
            "bm25",
        )
        sweep = {}
        for k in (1, 2, 5, 10, 20, 60):
            index._searcher.rrf_k = float(k)
            sweep[k] = [await evaluate(index, cases, "hybrid") for cases in sets.values()]
    print()
    print(f"{'set':11} {'mode':7} {'MRR':>6} {'recall@5':>9}")
    for (name, mode), m in results.items():
        print(f"{name:11} {mode:7} {m.mrr:6.3f} {m.recall_at_5:9.3f}")
    print(
        f"(bm25 with all column weights 1: MRR {uniform.mrr:.3f}, "
        f"recall@5 {uniform.recall_at_5:.3f})"
    )
    print("hybrid by rrf_k (MRR/recall@5 on existing, paraphrase, holdout):")
    for k, figures in sweep.items():
        print(f"  k={k:<3} " + "  ".join(f"{m.mrr:.3f}/{m.recall_at_5:.3f}" for m in figures))
    print("existing set, hybrid:", results["existing", "hybrid"].render())
    print("paraphrase set, hybrid:", results["paraphrase", "hybrid"].render())
    for key, (mrr, recall) in FLOORS.items():
        assert results[key].mrr >= mrr, (key, results[key].mrr)
        assert results[key].recall_at_5 >= recall, (key, results[key].recall_at_5)
    # hybrid keeps BM25's quality where BM25 is good ...
    assert results["existing", "hybrid"].mrr >= results["existing", "bm25"].mrr - 0.01
    # ... and finds what BM25 cannot: paraphrases (BM25's recall is 0 by construction)
    for name in ("paraphrase", "holdout"):
        assert results[name, "hybrid"].recall_at_5 >= 2 * results[name, "bm25"].recall_at_5
        assert results[name, "hybrid"].recall_at_5 >= 0.5
        # hybrid gives way to the vectors when BM25 only matches words by accident
        assert results[name, "hybrid"].recall_at_5 >= results[name, "vector"].recall_at_5
