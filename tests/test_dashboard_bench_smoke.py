"""The dashboard benchmark still runs (at a tiny size) and prints its figures."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "dashboard.py"


@pytest.mark.anyio
async def test_the_dashboard_benchmark_prints_first_paint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = importlib.util.spec_from_file_location("dashboard_bench_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        await bench.measure(argparse.Namespace(runs=4, waiting=2, rounds=1))
    finally:
        sys.modules.pop(spec.name, None)
    out = capsys.readouterr().out
    assert "dashboard with 4 runs (2 waiting)" in out
    assert "run list (first paint)" in out and "goal < 300 ms" in out
