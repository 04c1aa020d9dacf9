"""The decomposition benchmark still runs (no latency) and its figures are computed right."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "decomposition.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("decomposition_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["decomposition_under_test"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def stage(sid: str, duration: float, deps: list[str], **kw: Any) -> dict[str, Any]:
    return {"id": sid, "duration_s": duration, "depends_on": deps, "items": [], **kw}


def test_the_longest_chain_goes_through_the_planned_items(bench: ModuleType) -> None:
    view = {
        "stages": [
            stage("plan", 1.0, []),
            stage("execute", 0.0, ["plan"], items=["execute.t1", "execute.t2", "execute.t3"]),
            stage("execute.t1", 2.0, [], parent="execute"),
            stage("execute.t2", 3.0, [], parent="execute"),
            stage("execute.t3", 1.0, ["execute.t1"], parent="execute"),
            stage("audit", 0.5, ["execute"]),
        ]
    }
    assert bench.longest_chain(view) == pytest.approx(1.0 + 3.0 + 0.5)  # t1 -> t3 is 3.0 too


def test_wall_time_leaves_out_the_wait_for_a_human(bench: ModuleType) -> None:
    def env(at: float, **event: Any) -> dict[str, Any]:
        return {"at": at, "event": event}

    events = [
        env(0.0, type="run_created"),
        env(2.0, type="attempt_finished", stage="design", outcome="passed"),
        env(62.0, type="approval_decided", stage="design", approver="alice"),
        env(65.0, type="run_completed"),
    ]
    assert bench.wall_seconds(events) == pytest.approx(5.0)


def test_both_templates_run_on_the_stand_in_and_are_reported(bench: ModuleType) -> None:
    out = io.StringIO()
    assert bench.main(["--latency", "0", "--json"], out=out) == 0
    figures = {f["template"]: f for f in json.loads(out.getvalue())}
    assert set(figures) == {"plan_execute_audit", "feature_development"}
    pea, fd = figures["plan_execute_audit"], figures["feature_development"]
    assert (pea["stages"], fd["stages"]) == (7, 5)  # plan, 3 items, integrate, audit, approval
    for f in (pea, fd):
        assert f["status"] == "completed"
        assert 0 < f["peak_prompt_tokens"] <= f["prompt_tokens"]
        assert f["chain_s"] <= f["wall_s"] + 0.05  # the chain is part of the wall time
