"""``benchmarks/glob_braces.py`` and ``benchmarks/sandbox_overhead.py`` still run, at a tiny
size (no figures asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_measures_both_sides_of_a_small_case(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load("glob_braces")
    assert bench.main(["--cases", "x4,nested", "--reps", "1", "--timeout", "60", "--json"]) == 0
    small, nested = json.loads(capsys.readouterr().out)
    assert small["before"]["outcome"] == "16 regexes"
    assert small["after"]["outcome"] == "1 line(s)"  # "No files match ..."
    assert small["after"]["child_mb"] > 0 and small["before"]["server_mb"] > 0
    assert nested["before"]["outcome"] == "RecursionError"
    assert nested["after"]["outcome"].startswith("refused:")


def test_the_sandbox_benchmark_times_both_sides(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("sandbox_overhead")
    assert bench.main(["--reps", "1", "--json"]) == 0, (
        "install bubblewrap: apt-get install bubblewrap"
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["command"] for r in rows][:2] == ["true", "git status --short"]
    assert all(r["confined_ms"] > 0 and r["unconfined_ms"] > 0 for r in rows)


def test_the_merge_benchmark_times_lanes_and_sequential_commits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load("merge")
    assert bench.main(["--sizes", "2", "--reps", "1", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["branches"] == 2
    assert row["sequential_s"] > 0 and row["lanes_s"] > row["merges_s"] > 0
