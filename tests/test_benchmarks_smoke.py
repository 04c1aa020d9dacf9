"""The engine-overhead benchmark still runs: its stageflow half always, its LangGraph half when
the ``bench`` extra is installed."""

from __future__ import annotations

import importlib.util
import io
import itertools
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "engine_overhead.py"


def load_benchmark(name: str = "engine_overhead_under_test") -> ModuleType:
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


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark()


def test_layered_dag_is_seeded_and_each_stage_waits_for_one_to_three_of_the_previous_layer(
    bench: ModuleType,
) -> None:
    dag = bench.layered_dag(40, width=10, seed=3)
    assert dag == bench.layered_dag(40, width=10, seed=3)
    assert dag != bench.layered_dag(40, width=10, seed=4)
    assert {len(d) for d in dag.deps.values()} == {0, 1, 2, 3}
    layers = [dag.order[i : i + 10] for i in range(0, 40, 10)]
    assert all(dag.deps[s] == () for s in layers[0])
    for prev, layer in itertools.pairwise(layers):
        for sid in layer:
            assert 1 <= len(dag.deps[sid]) <= 3
            assert set(dag.deps[sid]) <= set(prev)
        # no stage of a layer is left without a successor
        assert set(prev) == {d for sid in layer for d in dag.deps[sid]}


def test_chain_dag_links_each_stage_to_the_one_before(bench: ModuleType) -> None:
    dag = bench.chain_dag(5)
    assert [dag.deps[s] for s in dag.order] == [(), ("s000",), ("s001",), ("s002",), ("s003",)]


def test_stageflow_half_runs_a_tiny_dag_to_completion_with_one_artifact_per_stage(
    bench: ModuleType, tmp_path: Path
) -> None:
    sample = bench.run_stageflow(bench.make_dag("layered", 10), tmp_path, concurrency=4)
    assert sample.engine == "stageflow"
    assert sample.stages == 10
    assert sample.extra == 10  # artifacts stored
    assert sample.writes >= 2 * 10 + 2  # a start and a finish per stage, plus run events
    assert sample.run_s > 0


def test_main_measures_stageflow_without_langgraph_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "langgraph", None)  # any import of it now fails
    module = load_benchmark("engine_overhead_without_langgraph")
    try:
        out = io.StringIO()
        argv = ["--stages", "10", "--reps", "1", "--warmup", "0", "--engine", "stageflow"]
        assert module.main(argv, out=out) == 0
        table = out.getvalue()
        assert "layered  stageflow" in table
        assert "chain    stageflow" in table
        assert "langgraph" not in table.split("\n", 1)[1]  # no LangGraph rows or ratios
        assert module.main([*argv[:-1], "langgraph"], out=io.StringIO()) == 2
    finally:
        sys.modules.pop("engine_overhead_without_langgraph", None)


def test_langgraph_half_checkpoints_every_node_and_main_prints_the_ratio(
    bench: ModuleType, tmp_path: Path
) -> None:
    pytest.importorskip("langgraph.checkpoint.sqlite")
    dag = bench.make_dag("layered", 10)
    sample = bench.run_langgraph(dag, tmp_path / "lg")
    assert sample.engine == "langgraph"
    assert sample.writes >= 2  # one checkpoint per superstep (2 layers here) and more
    out = io.StringIO()
    argv = ["--stages", "10", "--reps", "1", "--warmup", "0", "--shape", "chain"]
    assert bench.main(argv, out=out) == 0
    assert "chain    langgraph" in out.getvalue()
    assert "chain: stageflow/LangGraph per-stage overhead" in out.getvalue()
