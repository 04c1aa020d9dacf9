"""The knowledge benchmark still runs (at its smallest size) and reports its figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "knowledge.py"


def load_benchmark(name: str = "knowledge_bench_under_test") -> ModuleType:
    """Import the script as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def test_the_synthetic_corpus_is_seeded_and_queries_hit_it(tmp_path: Path) -> None:
    bench = load_benchmark()
    first = bench.write_corpus(tmp_path / "a", 100, seed=3)
    second = bench.write_corpus(tmp_path / "b", 100, seed=3)
    assert len(first) == 10
    assert [p.read_text() for p in first] == [p.read_text() for p in second]
    assert bench.selective_queries(100, 5, seed=3) == bench.selective_queries(100, 5, seed=3)


def test_main_measures_the_1k_size_and_returns_the_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load_benchmark()
    figures = bench.main(["--sizes", "1000", "--queries", "30", "--no-reload"])
    row = figures["sizes"]["1000"]
    assert row["sections"] == 1000
    assert row["docs"] == 100
    assert row["queries"] == 30
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert row["mean_hits"] > 0  # the selective queries do find their sections
    assert row["build_s"] > 0 and row["update_ms"] > 0
    assert figures["reload"] is None
    assert row["embed_s"] > 0 and 0 < row["hybrid_p50_ms"] <= row["hybrid_p95_ms"]
    assert row["hybrid_update_ms"] > 0
    out = capsys.readouterr().out
    assert "query p95 at 1000 sections" in out
    assert "hybrid query p95 at 1000 sections" in out
