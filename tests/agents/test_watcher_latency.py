"""The reload-latency benchmark still runs (a few saves through the real watcher)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "reload_latency.py"

pytestmark = pytest.mark.anyio


def load_benchmark(name: str = "reload_latency_under_test") -> ModuleType:
    """Import the script as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


async def test_the_benchmark_serves_every_save_of_both_styles() -> None:
    bench = load_benchmark()
    result = await bench.measure_reload_async(4)
    assert result["saves"] == 4
    assert set(result) >= {"p50_ms", "p95_ms", "max_ms", "in-place", "atomic", "reloads"}
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]
    assert result["reloads"] >= 5  # the warm-up and every save reached on_reload


def test_percentiles_are_nearest_rank() -> None:
    bench = load_benchmark()
    samples = [("in-place", float(v)) for v in range(1, 21)]
    summary = bench.summarize(samples)
    assert (summary["p50_ms"], summary["p95_ms"], summary["max_ms"]) == (10.5, 19.0, 20.0)
    assert summary["ok"] is True
    assert bench.summarize([("atomic", 301.0)])["ok"] is False
