"""Pooling and scoring variants of the vector ranking, measured on the retrieval sets.

The figures behind "what did not help" in docs/architecture.md (knowledge section): each
variant embeds the 236 sections of ``tests/knowledge/corpus`` with WordLlama's shipped token
vectors, pooled its way, ranks the 52 documents for each question and reports MRR and
recall@5 on the paraphrase set (tuned on) and the 60-query set (no type/tag filters here, so
its figures differ a little from ``test_retrieval.py``'s). The held-out paraphrases are
reported only with ``--holdout``: nothing is to be chosen by them.

```
python benchmarks/knowledge_pooling.py             # a few seconds
python benchmarks/knowledge_pooling.py --holdout
```
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stageflow.config import load_settings
from stageflow.knowledge.embedders import SIF_A, WordLlamaEmbedder
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.query import STOPWORDS
from stageflow.knowledge.vectors import section_text
from stageflow.store import Store
from stageflow.store.connection import fetch_all
from tests.knowledge.retrieval import (
    HOLDOUT,
    PARAPHRASES,
    QUERIES,
    Case,
    build_project,
    load_cases,
)

Array = Any  # numpy arrays; this script is not type-checked strictly
Ranker = Callable[[str], Array]


async def _sections() -> tuple[list[tuple[int, str]], dict[int, str]]:
    """(rowid, section text) of the corpus and doc rowid -> doc id."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(build_project(Path(tmp)))
        async with await Store.open(settings.db_path) as store:
            await KnowledgeIndex(store, settings).reindex()
            vectors = store.knowledge.vectors
            keys = await vectors.section_keys()
            texts = await vectors.section_texts([r for r, _ in keys])
            conn = store.knowledge._db.connection()
            docs = await fetch_all(conn, "SELECT doc_rowid, doc_id FROM knowledge_docs")
    return [(r, section_text(t, g, h, b)) for r, t, g, h, b in texts], {
        int(r): str(d) for r, d in docs
    }


class Corpus:
    """The token ids of every section, WordLlama's raw table and the documents."""

    def __init__(self, sections: list[tuple[int, str]], doc_ids: dict[int, str]) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        weights, tokenizer = WordLlamaEmbedder.package_files()
        self.table = load_file(str(weights))["embedding.weight"].astype(np.float32)
        self.tok = Tokenizer.from_file(str(tokenizer))
        self.tok.no_padding()
        self.texts = [t for _, t in sections]
        self.ids = [self.encode(t) for t in self.texts]
        docs = np.array([r >> 20 for r, _ in sections])
        order = sorted(set(docs.tolist()))
        self.doc_ids = [doc_ids[d] for d in order]
        self.sec_doc = np.array([order.index(d) for d in docs.tolist()])
        self.length = np.array([len(t) for t in self.texts], np.float32)
        vocab = self.table.shape[0]
        rank = np.arange(1, vocab + 1, dtype=np.float64)
        self.zipf = (1.0 / rank) / (1.0 / rank).sum()
        inv = {i: t for t, i in self.tok.get_vocab().items()}
        self.stop = np.zeros(vocab, bool)
        for i, t in inv.items():
            word = t.replace("\u2581", "").lower()
            self.stop[i] = word in STOPWORDS or not re.search(r"[A-Za-z0-9]", t)
        df = np.zeros(vocab)
        for x in self.ids:
            df[list(set(x))] += 1
        self.idf = (np.log((len(self.ids) + 1) / (df + 1)) + 1).astype(np.float32)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def sif(self, a: float = SIF_A) -> Array:
        return (a / (a + self.zipf)).astype(np.float32)


def _unit(x: Array) -> Array:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _pool(c: Corpus, ids: Sequence[int], w: Array, drop_stop: bool = False) -> Array:
    ids = [i for i in ids if not (drop_stop and c.stop[i])]
    if not ids:
        return np.zeros(c.table.shape[1], np.float32)
    a = np.array(ids)
    return (c.table[a] * w[a][:, None]).sum(0) / len(a)


def _doc_scores(c: Corpus, q: Array, s: Array, alpha: float) -> Array:
    """ALPHA x best section + (1 - ALPHA) x the length-weighted document vector."""
    sims = s @ q
    best = np.full(len(c.doc_ids), -np.inf)
    np.maximum.at(best, c.sec_doc, sims)
    dv = np.zeros((len(c.doc_ids), s.shape[1]), np.float32)
    np.add.at(dv, c.sec_doc, s * c.length[:, None])
    return alpha * best + (1 - alpha) * (_unit(dv) @ q)


def pooled(
    c: Corpus,
    w: Array,
    *,
    alpha: float = 0.5,
    drop_stop: bool = False,
    transform: Callable[[Array], Array] | None = None,
) -> Ranker:
    """The vector ranking with token weights ``w``, optionally a corpus transform."""
    raw = _unit(np.stack([_pool(c, x, w, drop_stop) for x in c.ids]))
    tf = transform or (lambda x: x)
    s = _unit(tf(raw))

    def rank(query: str) -> Array:
        q = _unit(tf(_unit(_pool(c, c.encode(query), w, drop_stop))[None]))[0]
        return _doc_scores(c, q, s, alpha)

    return rank


def rocchio(c: Corpus, top: int, beta: float) -> Ranker:
    """Pseudo-relevance feedback: the query moved towards its ``top`` documents."""
    w = c.sif()
    s = _unit(np.stack([_pool(c, x, w) for x in c.ids]))
    dv = np.zeros((len(c.doc_ids), s.shape[1]), np.float32)
    np.add.at(dv, c.sec_doc, s * c.length[:, None])
    dv = _unit(dv)

    def rank(query: str) -> Array:
        q = _unit(_pool(c, c.encode(query), w))
        first = np.argsort(-_doc_scores(c, q, s, 0.5))[:top]
        return _doc_scores(c, _unit(q + beta * dv[first].mean(0)), s, 0.5)

    return rank


def without_components(c: Corpus, k: int) -> Callable[[Array], Array]:
    """Remove the corpus' top ``k`` principal directions (the 'common component')."""
    raw = _unit(np.stack([_pool(c, x, c.sif()) for x in c.ids]))
    top = np.linalg.svd(raw, full_matrices=False)[2][:k]
    return lambda x: x - (x @ top.T) @ top


def centred(c: Corpus) -> Callable[[Array], Array]:
    mean = _unit(np.stack([_pool(c, x, c.sif()) for x in c.ids])).mean(0)
    return lambda x: x - mean


def evaluate(c: Corpus, rank: Ranker, cases: Sequence[Case]) -> tuple[float, float]:
    rr, recall = [], []
    for case in cases:
        order = np.argsort(-rank(case.query), kind="stable")[:5]
        got = [c.doc_ids[i] for i in order]
        first = next((i + 1 for i, d in enumerate(got) if d in case.expected), None)
        rr.append(1 / first if first else 0.0)
        recall.append(sum(e in got for e in case.expected) / len(case.expected))
    return float(np.mean(rr)), float(np.mean(recall))


def variants(c: Corpus) -> dict[str, Ranker]:
    out: dict[str, Ranker] = {"baseline (SIF 1e-3, ALPHA 0.5)": pooled(c, c.sif())}
    for a in (1e-4, 3e-4, 3e-3, 1e-2):
        out[f"SIF a={a:g}"] = pooled(c, c.sif(a))
    out["drop stopword/punctuation tokens"] = pooled(c, c.sif(), drop_stop=True)
    out["corpus token IDF"] = pooled(c, c.idf)
    out["corpus token IDF, ALPHA 0"] = pooled(c, c.idf, alpha=0.0)
    for alpha in (0.0, 0.3, 0.7, 1.0):
        out[f"ALPHA {alpha}"] = pooled(c, c.sif(), alpha=alpha)
    for k in (1, 2, 3):
        out[f"remove {k} principal component(s)"] = pooled(
            c, c.sif(), transform=without_components(c, k)
        )
    out["centred on the corpus mean"] = pooled(c, c.sif(), transform=centred(c))
    for top, beta in ((2, 0.5), (3, 0.3), (5, 0.5)):
        out[f"Rocchio top {top}, beta {beta}"] = rocchio(c, top, beta)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout", action="store_true", help="also the held-out set")
    args = parser.parse_args(argv)
    corpus = Corpus(*asyncio.run(_sections()))
    sets = {"paraphrase": load_cases(PARAPHRASES), "60-query": load_cases(QUERIES)}
    if args.holdout:
        sets["held-out"] = load_cases(HOLDOUT)
    head = f"{'variant':36}" + "".join(f" {name:>15}" for name in sets)
    lines = [head, " " * 36 + " MRR/recall@5" * len(sets)]
    for name, rank in variants(corpus).items():
        figures = [evaluate(corpus, rank, cases) for cases in sets.values()]
        lines.append(f"{name:36}" + "".join(f"     {m:.3f}/{r:.3f}" for m, r in figures))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
