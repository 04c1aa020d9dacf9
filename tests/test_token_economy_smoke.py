"""The token-economy benchmark still runs end to end: stageflow's CLI with the anthropic runner
against the Messages API stand-in, the lean single conversation, and one real Claude Code
session (``claude -p`` then ``--resume`` per stage) when the CLI is there.

The CLI is looked up, and installed into ``.ci/node`` when missing, by the benchmark's own
``find_claude`` (the pinned package of ``tests/server/test_claude_code.py``). Only when it cannot
be found or installed is the session half expected to be skipped, and then it must say so.
"""

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
HALVES = ("stageflow", "lean", "claude_code")

pytestmark = pytest.mark.slow  # spawns the `stageflow` CLI and Claude Code


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
def claude(bench: ModuleType) -> Path | None:
    """The Claude Code CLI the benchmark will use (installed now if missing), or None."""
    found: Path | None = bench.find_claude(install_missing=True)[0]
    return found


@pytest.fixture(scope="module")
def result(bench: ModuleType, claude: Path | None) -> dict[str, Any]:
    out = io.StringIO()
    figures: dict[str, Any] = bench.main(["--json"], out=out)
    assert json.loads(out.getvalue()) == figures  # --json prints what main returns
    return figures


def test_the_figures_have_three_halves_and_name_the_judged_baseline(
    result: dict[str, Any],
) -> None:
    assert {*HALVES, "ratios", "cost_ratios", "target", "judged_against"} <= result.keys()
    assert set(result["ratios"]) == set(result["cost_ratios"]) == {"lean", "claude_code"}
    assert (result["target"], result["judged_against"]) == (0.20, "claude_code")
    assert (result["stages"], result["lean_floor"]) == (5, 0.2)


def test_stageflow_and_the_lean_session_do_the_same_work_per_stage(
    result: dict[str, Any],
) -> None:
    for half in ("stageflow", "lean"):
        assert result[half]["status"] == "completed"
        assert [s["stage"] for s in result[half]["stages"]] == STAGES
    work = [[s["requests"] for s in result[h]["stages"]] for h in ("stageflow", "lean")]
    assert work[0] == work[1]


def test_the_stageflow_ledger_agrees_with_the_stand_in(result: dict[str, Any]) -> None:
    [note] = result["stageflow"]["notes"]
    assert "matches the stand-in's count" in note


def test_the_figures_add_up(result: dict[str, Any]) -> None:
    for half in (h for h in HALVES if result[h]["status"] == "completed"):
        h = result[half]
        assert (
            h["prompt_tokens"]
            == h["input_tokens"] + h["cache_read_tokens"] + (h["cache_write_tokens"])
        )
        assert h["prompt_tokens"] == sum(s["prompt_tokens"] for s in h["stages"])
        assert h["requests"] == sum(s["requests"] for s in h["stages"]) == sum(h["models"].values())
        assert 0 < h["cache_read_share"] < 1
        assert 0 < h["standing_tokens"] < h["prompt_tokens"] / h["requests"]
    ratio = result["stageflow"]["prompt_tokens"] / result["lean"]["prompt_tokens"]
    assert result["ratios"]["lean"] == round(ratio, 4)


def test_stageflow_sends_less_than_the_lean_session_whose_first_requests_grow(
    result: dict[str, Any],
) -> None:
    lean = [s["first_request_tokens"] for s in result["lean"]["stages"]]
    assert lean == sorted(lean) and len(set(lean)) == len(lean)
    ours = [s["first_request_tokens"] for s in result["stageflow"]["stages"]]
    # fresh contexts: the last stage starts smaller than half of the lean session's last stage
    assert ours[-1] < lean[-1] / 2
    assert result["stageflow"]["prompt_tokens"] < result["lean"]["prompt_tokens"]
    assert result["ratios"]["lean"] < 1


def test_the_claude_code_session_ran_and_its_ratio_is_judged(
    result: dict[str, Any], claude: Path | None
) -> None:
    cc = result["claude_code"]
    if claude is None:  # no CLI and no way to install one: skipped, and saying so
        assert cc["status"] == "skipped" and cc["notes"][0].startswith("skipped: ")
        assert (result["ratios"]["claude_code"], result["meets_target"]) == (None, None)
        return
    assert cc["status"] == "completed", cc["notes"]
    assert [s["stage"] for s in cc["stages"]] == STAGES
    assert "matches the stand-in's count" in cc["notes"][0]
    assert "(0 from MCP)" in cc["notes"][1]  # --strict-mcp-config with no servers
    # one session: every stage starts from all earlier ones plus Claude Code's standing context
    firsts = [s["first_request_tokens"] for s in cc["stages"]]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    # 2.1.328 defers MCP and rare tools behind ToolSearch: 19.0k standing tokens against our 2.0k
    assert firsts[0] > cc["standing_tokens"] > 5 * result["stageflow"]["standing_tokens"]
    ratio = result["stageflow"]["prompt_tokens"] / cc["prompt_tokens"]
    assert result["ratios"]["claude_code"] == round(ratio, 4)
    assert result["meets_target"] == (ratio <= result["target"])


def test_the_report_judges_the_target_against_the_claude_code_session(
    bench: ModuleType,
) -> None:
    stageflow = bench.Half("stageflow", "completed", input_tokens=10, cache_read_tokens=30)
    stageflow.stages = [bench.StageFigures(s) for s in STAGES]
    lean = bench.Half("lean", "completed", input_tokens=50, cache_read_tokens=30)
    cc = bench.Half("claude-code", "completed", input_tokens=100, cache_read_tokens=100)
    out = io.StringIO()
    bench.render(bench.compare(stageflow, lean, cc), out)
    text = out.getvalue()
    assert "stageflow/claude-code session prompt tokens = 0.200 (meets the target <= 0.20" in text
    assert "stageflow/lean single conversation = 0.500" in text
    assert "bounded below by about 1/S = 0.20" in text


def test_a_skipped_claude_code_half_is_reported_and_leaves_the_target_unjudged(
    bench: ModuleType,
) -> None:
    stageflow = bench.Half("stageflow", "completed", input_tokens=10)
    lean = bench.Half("lean", "completed", input_tokens=50)
    figures = bench.compare(stageflow, lean, bench.skipped("claude-code", "no npm on PATH"))
    assert (figures["ratios"], figures["meets_target"]) == (
        {"lean": 0.2, "claude_code": None},
        None,
    )
    out = io.StringIO()
    bench.render(figures, out)
    assert "skipped: claude-code: no npm on PATH\n" in out.getvalue()
    assert "target not judged" in out.getvalue()
