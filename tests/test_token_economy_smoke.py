"""The token-economy benchmark still runs end to end: stageflow's CLI with the anthropic runner
against the Messages API stand-in, then the single-session baseline."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "token_economy.py"
STAGES = ["architecture", "implementation", "testing", "review", "deployment"]

pytestmark = pytest.mark.slow  # the stageflow half spawns the `stageflow` CLI


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    name = "token_economy_under_test"
    spec = importlib.util.spec_from_file_location(name, BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def result(bench: ModuleType) -> dict[str, Any]:
    out = io.StringIO()
    figures: dict[str, Any] = bench.main(["--json"], out=out)
    assert json.loads(out.getvalue()) == figures  # --json prints what main returns
    return figures


def test_both_halves_complete_every_stage_of_the_template(result: dict[str, Any]) -> None:
    for half in ("stageflow", "baseline"):
        assert result[half]["status"] == "completed"
        assert [s["stage"] for s in result[half]["stages"]] == STAGES
        # the same scripted work per stage in both halves
    work = [[s["requests"] for s in result[h]["stages"]] for h in ("stageflow", "baseline")]
    assert work[0] == work[1]


def test_the_stageflow_ledger_agrees_with_the_stand_in(result: dict[str, Any]) -> None:
    [note] = result["stageflow"]["notes"]
    assert "matches the stand-in's count" in note


def test_the_figures_add_up(result: dict[str, Any]) -> None:
    for half in ("stageflow", "baseline"):
        h = result[half]
        assert (
            h["prompt_tokens"]
            == h["input_tokens"] + h["cache_read_tokens"] + (h["cache_write_tokens"])
        )
        assert h["prompt_tokens"] == sum(s["prompt_tokens"] for s in h["stages"])
        assert h["requests"] == sum(s["requests"] for s in h["stages"])
        assert 0 < h["cache_read_share"] < 1
    ratio = result["stageflow"]["prompt_tokens"] / result["baseline"]["prompt_tokens"]
    assert result["ratio"] == round(ratio, 4)
    assert result["meets_target"] == (ratio <= result["target"])


def test_only_the_baseline_first_requests_grow_with_earlier_stages(
    result: dict[str, Any],
) -> None:
    base = [s["first_request_tokens"] for s in result["baseline"]["stages"]]
    assert base == sorted(base) and len(set(base)) == len(base)
    ours = [s["first_request_tokens"] for s in result["stageflow"]["stages"]]
    # fresh contexts: the last stage starts smaller than half of the baseline's last stage
    assert ours[-1] < base[-1] / 2
    assert result["ratio"] < 1


def test_the_human_readable_report_names_the_ratio(bench: ModuleType) -> None:
    stageflow = bench.Half("stageflow", "completed", input_tokens=10, cache_read_tokens=30)
    baseline = bench.Half("baseline", "completed", input_tokens=100, cache_read_tokens=100)
    out = io.StringIO()
    bench.render(bench.compare(stageflow, baseline), out)
    assert "stageflow/baseline prompt tokens = 0.200 (meets the target <= 0.20)" in out.getvalue()
