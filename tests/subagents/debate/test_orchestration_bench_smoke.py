"""``benchmarks/orchestration_cost.py`` runs and meets its goal on the stand-in's prices."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "orchestration_cost.py"


def test_the_cheap_moderator_costs_at_most_a_fifth(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("orchestration_cost_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    out = module.main(["--json"])
    assert out["cheap"]["exit"] == 0 and out["participants_model"]["exit"] == 0
    assert out["cheap"]["rounds"] >= 2
    assert 0 < out["ratio"] <= out["goal"]
