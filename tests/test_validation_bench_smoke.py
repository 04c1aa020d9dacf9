"""``benchmarks/validation.py`` still runs: two cases at the small size, current code only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "validation.py"

pytestmark = pytest.mark.slow


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validation_bench_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_the_validation_benchmark_measures_each_case_in_a_child(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load()
    assert bench.main(["--small", "--cases", "deep_toml,chain8000", "--json"]) == 0
    samples = [bench.Sample(**s) for s in json.loads(capsys.readouterr().out)]
    assert [(s.case, s.version) for s in samples] == [
        ("deep_toml", "after"),
        ("chain8000", "after"),
    ]
    deep, chain = samples
    assert deep.outcome == "exit 0" and deep.out_bytes > 0  # one error line, no traceback
    assert chain.outcome == "exit 1"  # 1,500 stages: over the stage bound
    assert all(s.seconds > 0 and s.peak_mb > 0 for s in samples)
