"""Knowledge index benchmark: build time and query latency at 1k, 10k and 100k sections.

For each size a synthetic project is written to a temporary directory: Markdown files of ten
sections each under ``.stageflow/knowledge/``, made of a Zipf-distributed common vocabulary plus
a few rare topic words per document (each topic word occurs in a handful of documents). Then:

- ``build``: ``KnowledgeIndex.reindex()`` from the files (read, parse, split, one transaction,
  FTS5 optimize);
- ``query``: ``search(q, limit=10)`` for selective queries (two topic words and one common
  word, as a developer's question would mix them), after a warm-up; p50, p95 and max;
- ``update``: ``update_paths([file])`` after rewriting one file (the watcher's path);
- ``sync``: ``sync()`` with nothing changed (one stat per file);
- the hybrid column (when the ``embeddings`` extra is installed): ``embed s`` is the first
  ``refresh_vectors()`` after the build (every section embedded by WordLlama and stored),
  ``hyb p95`` the same queries with ``mode="hybrid"`` (BM25 and vectors fused), ``hyb upd``
  the one-file update followed by the refresh that re-embeds its changed section.

The target is a query p95 under 50 ms at 100k sections, for BM25 and for hybrid. The
``reload`` part (file saved -> new agent definition served, over 20 saves) comes from
``benchmarks/reload_latency.py`` when that script is present.

    python benchmarks/knowledge.py                       # 1k, 10k, 100k sections
    python benchmarks/knowledge.py --sizes 1000 --queries 50 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from stageflow.config import load_settings
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store import Store

SIZES = (1_000, 10_000, 100_000)
SECTIONS_PER_DOC = 10
WORDS_PER_SECTION = 70
TARGET_P95_MS = 50.0
RELOAD_SCRIPT = Path(__file__).resolve().with_name("reload_latency.py")

_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class SizeResult:
    """Figures for one corpus size (times in milliseconds unless named seconds)."""

    sections: int
    docs: int
    build_s: float
    sections_per_s: float
    db_mb: float
    queries: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    mean_hits: float
    update_ms: float
    sync_ms: float
    embed_s: float | None = None
    hybrid_p50_ms: float | None = None
    hybrid_p95_ms: float | None = None
    hybrid_update_ms: float | None = None


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


@dataclass(frozen=True)
class Vocabulary:
    common: tuple[str, ...]
    weights: tuple[float, ...]
    topics: tuple[str, ...]


def vocabulary(docs: int, seed: int) -> Vocabulary:
    """2,000 common words with Zipf weights, and about one rare topic word per two documents."""
    rng = random.Random(seed)
    common = tuple(dict.fromkeys(_word(rng, rng.randint(1, 3)) for _ in range(2600)))[:2000]
    topics_wanted = max(20, docs // 2)
    topics: dict[str, None] = {}
    while len(topics) < topics_wanted:
        word = _word(rng, 4) + str(rng.randint(0, 9))  # digits keep them apart from common
        topics.setdefault(word, None)
    weights = tuple(1.0 / (rank + 1) for rank in range(len(common)))
    return Vocabulary(common, weights, tuple(topics))


def write_corpus(project: Path, sections: int, seed: int = 7) -> list[Path]:
    """Write ``sections`` sections as documents of ``SECTIONS_PER_DOC`` into ``project``."""
    docs = max(1, sections // SECTIONS_PER_DOC)
    vocab = vocabulary(docs, seed)
    rng = random.Random(seed + 1)
    folder = project / ".stageflow" / "knowledge" / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for d in range(docs):
        topics = rng.sample(vocab.topics, 3)
        lines = [
            "---",
            f"title: {' '.join(rng.choices(vocab.common, vocab.weights, k=4))} {topics[0]}",
            f"tags: [{topics[1]}, {rng.choice(vocab.common)}]",
            "---",
            f"# Document {d}",
            "",
        ]
        for s in range(SECTIONS_PER_DOC):
            words = rng.choices(vocab.common, vocab.weights, k=WORDS_PER_SECTION)
            if rng.random() < 0.5:
                words[rng.randrange(len(words))] = rng.choice(topics)
            lines += [f"## Part {s} {rng.choice(vocab.common)}", "", " ".join(words) + ".", ""]
        path = folder / f"doc{d:06d}.md"
        path.write_text("\n".join(lines), encoding="utf-8")
        paths.append(path)
    return paths


def selective_queries(sections: int, count: int, seed: int = 7) -> list[str]:
    """Questions naming two topic words and a common word (a handful of matching sections)."""
    vocab = vocabulary(max(1, sections // SECTIONS_PER_DOC), seed)
    rng = random.Random(seed + 2)
    return [
        f"how do we handle {rng.choice(vocab.topics)} with {rng.choice(vocab.topics)} "
        f"{rng.choice(vocab.common[50:500])}?"
        for _ in range(count)
    ]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def measure_size(sections: int, *, queries: int = 200, seed: int = 7) -> SizeResult:
    """Build a fresh index of ``sections`` sections and time it, its queries and updates."""
    with tempfile.TemporaryDirectory(prefix="stageflow-kbench-") as tmp:
        project = Path(tmp) / "project"
        paths = write_corpus(project, sections, seed)
        settings = load_settings(project)
        async with await Store.open(settings.db_path) as store:
            index = KnowledgeIndex(store, settings)
            started = time.perf_counter()
            report = await index.reindex()
            build_s = time.perf_counter() - started
            docs, indexed = await index.counts()
            questions = selective_queries(sections, queries + 20, seed)
            for q in questions[:20]:  # warm-up: page cache, statement cache
                await index.search(q, limit=10, mode="bm25")
            latencies: list[float] = []
            hits = 0
            for q in questions[20:]:
                t0 = time.perf_counter()
                found = await index.search(q, limit=10, mode="bm25")
                latencies.append(time.perf_counter() - t0)
                hits += len(found)
            target = paths[len(paths) // 2]
            target.write_text(target.read_text(encoding="utf-8") + "\nAn added line.\n")
            t0 = time.perf_counter()
            await index.update_paths([target])
            update_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await index.sync()
            sync_s = time.perf_counter() - t0
            dense = (
                await measure_hybrid(index, questions, paths) if index.embedder.available else {}
            )
        db_bytes = sum(p.stat().st_size for p in settings.db_path.parent.glob("state.db*"))
    if report.errors:
        raise RuntimeError(f"indexing reported problems: {report.errors[:3]}")
    latencies.sort()
    return SizeResult(
        sections=indexed,
        docs=docs,
        build_s=round(build_s, 3),
        sections_per_s=round(indexed / build_s),
        db_mb=round(db_bytes / 1e6, 1),
        queries=len(latencies),
        p50_ms=_ms(statistics.median(latencies)),
        p95_ms=_ms(latencies[max(0, math.ceil(len(latencies) * 0.95) - 1)]),  # nearest rank
        max_ms=_ms(latencies[-1]),
        mean_hits=round(hits / len(latencies), 1),
        update_ms=_ms(update_s),
        sync_ms=_ms(sync_s),
        **dense,
    )


async def measure_hybrid(
    index: KnowledgeIndex, questions: Sequence[str], paths: Sequence[Path]
) -> dict[str, float]:
    """The hybrid column: embedding every section, hybrid query latency, a one-file update."""
    await index.vectors()  # the model's load is start-up of the first query, not the build
    t0 = time.perf_counter()
    await index.refresh_vectors()
    embed_s = time.perf_counter() - t0
    for q in questions[:20]:
        await index.search(q, limit=10, mode="hybrid")
    latencies: list[float] = []
    for q in questions[20:]:
        t0 = time.perf_counter()
        await index.search(q, limit=10, mode="hybrid")
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    target = paths[len(paths) // 3]
    target.write_text(target.read_text(encoding="utf-8") + "\nAnother added line.\n")
    t0 = time.perf_counter()
    await index.update_paths([target])
    await index.refresh_vectors()
    update_s = time.perf_counter() - t0
    return {
        "embed_s": round(embed_s, 3),
        "hybrid_p50_ms": _ms(statistics.median(latencies)),
        "hybrid_p95_ms": _ms(latencies[max(0, math.ceil(len(latencies) * 0.95) - 1)]),
        "hybrid_update_ms": _ms(update_s),
    }


def reload_part(saves: int = 20) -> dict[str, Any] | None:
    """The reload-latency figures from ``benchmarks/reload_latency.py``, if that script exists.

    It is expected to provide ``measure_reload(saves: int) -> dict`` (p50/p95 of file saved ->
    new definition served).
    """
    if not RELOAD_SCRIPT.is_file():
        return None
    spec = importlib.util.spec_from_file_location("reload_latency", RELOAD_SCRIPT)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reload_latency"] = module
    spec.loader.exec_module(module)
    measure = getattr(module, "measure_reload", None)
    if measure is None:
        return None
    result = measure(saves)
    return dict(result) if not isinstance(result, dict) else result


def render(results: Sequence[SizeResult]) -> str:
    head = (
        f"{'sections':>9} {'docs':>6} {'build s':>8} {'sect/s':>8} {'db MB':>6} "
        f"{'queries':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'hits':>5} "
        f"{'update ms':>9} {'sync ms':>8} {'embed s':>8} {'hyb p50':>8} {'hyb p95':>8} "
        f"{'hyb upd':>8}"
    )
    rows = [
        f"{r.sections:>9} {r.docs:>6} {r.build_s:>8.2f} {r.sections_per_s:>8} {r.db_mb:>6.1f} "
        f"{r.queries:>7} {r.p50_ms:>7.2f} {r.p95_ms:>7.2f} {r.max_ms:>7.2f} {r.mean_hits:>5.1f} "
        f"{r.update_ms:>9.2f} {r.sync_ms:>8.1f} {_opt(r.embed_s)} {_opt(r.hybrid_p50_ms)} "
        f"{_opt(r.hybrid_p95_ms)} {_opt(r.hybrid_update_ms)}"
        for r in results
    ]
    largest = max(results, key=lambda r: r.sections)
    verdict = "met" if largest.p95_ms < TARGET_P95_MS else "MISSED"
    footer = (
        f"query p95 at {largest.sections} sections: {largest.p95_ms:.2f} ms "
        f"(target < {TARGET_P95_MS:.0f} ms: {verdict})"
    )
    if largest.hybrid_p95_ms is None:
        footer += "\nhybrid: no embedder (install the embeddings extra)"
    else:
        verdict = "met" if largest.hybrid_p95_ms < TARGET_P95_MS else "MISSED"
        footer += (
            f"\nhybrid query p95 at {largest.sections} sections: {largest.hybrid_p95_ms:.2f} ms "
            f"(target < {TARGET_P95_MS:.0f} ms: {verdict})"
        )
    return "\n".join([head, *rows, footer])


def _opt(value: float | None) -> str:
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table (or JSON), and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="comma-separated section counts (default 1000,10000,100000)",
    )
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-reload", action="store_true", help="skip the reload part")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results: list[SizeResult] = []
    for n in sizes:
        results.append(anyio.run(partial(measure_size, n, queries=args.queries, seed=args.seed)))
    reload = None if args.no_reload else reload_part()
    figures: dict[str, Any] = {
        "sizes": {str(r.sections): asdict(r) for r in results},
        "target_p95_ms": TARGET_P95_MS,
        "reload": reload,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(render(results))
        if reload is not None:
            print(f"reload: {reload}")
        elif not args.no_reload:
            print("reload: benchmarks/reload_latency.py not available")
    return figures


if __name__ == "__main__":
    main()
