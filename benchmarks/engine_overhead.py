"""Per-stage orchestration overhead: stageflow vs LangGraph on the same DAG, no model time.

Both engines run the same seeded DAG with durable commits to a SQLite file in a temp dir:

- stageflow: a template written into a temp project, ``Service.start_run``, then
  ``Scheduler.drive(run_id, until="terminal")`` with ``InstantRunner`` (returns at once with
  one small artifact per stage). Every transition is committed (the engine's own behaviour).
- LangGraph: a ``StateGraph`` with one node per stage, ``add_edge([deps...], node)`` joins,
  a reducer that merges per-stage outputs, compiled with ``SqliteSaver`` (or
  ``AsyncSqliteSaver``) and invoked with a thread id and ``durability="sync"``, so each
  superstep is persisted before the next one starts.

Durability is matched: both run SQLite in WAL mode, and LangGraph's connection gets the
``synchronous`` level stageflow's store sets on its own (read at start-up, printed in the
header; ``--lg-synchronous`` overrides it). Repetitions interleave the engines (A, B, A, B,
...) and the table shows medians.

    python benchmarks/engine_overhead.py                 # 200 stages, both shapes, 5 reps
    python benchmarks/engine_overhead.py --shape chain --reps 9
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO, TypedDict

import anyio

from stageflow.config import load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.store.connection import fetch_all, open_connection
from stageflow.store.store import Store

Shape = Literal["layered", "chain"]
Engine = Literal["stageflow", "langgraph"]
LangGraphMode = Literal["sync", "async"]

AGENT_MD = """\
---
name: bench-worker
description: Benchmark agent; never calls a model.
model: haiku
---
Return the artifact.
"""


# -- the DAG -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dag:
    """Stages in topological order and, per stage, the stages it waits for."""

    shape: Shape
    order: tuple[str, ...]
    deps: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.order)


def layered_dag(stages: int, *, width: int = 10, seed: int = 7) -> Dag:
    """Layers of ``width`` stages; each stage waits for 1-3 stages of the previous layer.

    Every stage of a layer is waited for by at least one stage of the next, so no branch
    dangles (a last, narrower layer may therefore wait for more than 3). Same
    ``(stages, width, seed)`` -> same DAG.
    """
    rng = random.Random(seed)
    ids = [f"s{i:03d}" for i in range(stages)]
    layers = [ids[i : i + width] for i in range(0, stages, width)]
    deps: dict[str, tuple[str, ...]] = {sid: () for sid in layers[0]}
    for prev, layer in itertools.pairwise(layers):
        chosen: dict[str, set[str]] = {sid: set() for sid in layer}
        for i, parent in enumerate(rng.sample(prev, len(prev))):
            chosen[layer[i % len(layer)]].add(parent)  # every parent gets a successor
        for sid in layer:
            want = min(rng.randint(1, 3), len(prev))
            while len(chosen[sid]) < want:
                chosen[sid].add(rng.choice(prev))
        deps.update({sid: tuple(sorted(c)) for sid, c in chosen.items()})
    return Dag("layered", tuple(ids), deps)


def chain_dag(stages: int) -> Dag:
    """``stages`` stages in a row."""
    ids = [f"s{i:03d}" for i in range(stages)]
    return Dag("chain", tuple(ids), {sid: tuple(ids[i - 1 : i]) for i, sid in enumerate(ids)})


def make_dag(shape: Shape, stages: int, seed: int = 7) -> Dag:
    return layered_dag(stages, seed=seed) if shape == "layered" else chain_dag(stages)


# -- one measurement -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One run of one engine: ``setup_s`` builds/records it, ``run_s`` executes it."""

    engine: Engine
    shape: Shape
    stages: int
    setup_s: float
    run_s: float
    writes: int  # stageflow: events committed; LangGraph: checkpoints written
    extra: int  # stageflow: artifacts stored; LangGraph: pending-write rows

    @property
    def per_stage_ms(self) -> float:
        return self.run_s / self.stages * 1000


# -- stageflow -----------------------------------------------------------------------------


class InstantRunner:
    """Returns at once: one small artifact per stage, no model, no sleep."""

    name = "instant"

    async def run(self, request: AttemptRequest) -> AttemptResult:
        sid = request.stage.id
        return AttemptResult(
            status="passed",
            summary=f"{sid} done",
            artifacts={name: f"{sid}/{name}: ok\n" for name in request.stage.produces},
            runner=self.name,
            model="none",
        )


def template_yaml(dag: Dag, *, name: str, concurrency: int) -> str:
    """The DAG as a stageflow template: each stage produces ``out`` and needs its deps' ``out``."""
    lines = [
        f"name: {name}",
        "inputs: {task: {type: string, required: true}}",
        f"limits: {{max_concurrent_agents: {concurrency}}}",
        "stages:",
    ]
    for sid in dag.order:
        deps = dag.deps[sid]
        lines += [f"  - id: {sid}", "    agent: bench-worker", "    produces: [out]"]
        if deps:
            lines.append(f"    depends_on: [{', '.join(deps)}]")
            lines.append(f"    needs: [{', '.join(f'{d}.out' for d in deps)}]")
    return "\n".join(lines) + "\n"


async def _stageflow_async(dag: Dag, workdir: Path, concurrency: int) -> Sample:
    project = workdir / "project"
    sf = project / ".stageflow"
    (sf / "agents").mkdir(parents=True)
    (sf / "workflows").mkdir(parents=True)
    (sf / "agents" / "bench-worker.md").write_text(AGENT_MD, encoding="utf-8")
    name = f"bench_{dag.shape}"
    (sf / "workflows" / f"{name}.yaml").write_text(
        template_yaml(dag, name=name, concurrency=concurrency), encoding="utf-8"
    )
    settings = load_settings(project, runner="offline")
    async with await Store.open(settings.db_path) as store:
        t0 = time.perf_counter()
        state = await Service(settings, store, runner_label="instant").start_run(
            name, "engine overhead benchmark"
        )
        t1 = time.perf_counter()
        scheduler = Scheduler(store, InstantRunner(), max_concurrent_agents=concurrency)
        final = await scheduler.drive(state.run_id, until="terminal")
        t2 = time.perf_counter()
        if final.status != "completed":
            raise RuntimeError(f"stageflow run ended {final.status}: {final.end_reason}")
        events = len(await store.load_events(state.run_id))
        artifacts = len(await store.list_artifacts(state.run_id))
    return Sample("stageflow", dag.shape, len(dag), t1 - t0, t2 - t1, events, artifacts)


def run_stageflow(dag: Dag, workdir: Path, *, concurrency: int = 10) -> Sample:
    """Execute ``dag`` once with stageflow in a fresh project under ``workdir``."""
    return anyio.run(_stageflow_async, dag, workdir, concurrency, backend="asyncio")


SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


async def _store_synchronous(db: Path) -> str:
    conn = await open_connection(db)
    try:
        rows = await fetch_all(conn, "PRAGMA synchronous")
    finally:
        await conn.close()
    return SYNCHRONOUS_LEVELS[int(rows[0][0])]


def stageflow_synchronous() -> str:
    """The ``PRAGMA synchronous`` level stageflow's store connections run with."""
    with tempfile.TemporaryDirectory(prefix="bench-pragma-") as tmp:
        return anyio.run(_store_synchronous, Path(tmp) / "probe.db", backend="asyncio")


# -- LangGraph (imported lazily: a benchmark-only dependency) --------------------------------


def merge_outputs(left: dict[str, str], right: dict[str, str]) -> dict[str, str]:
    """The state reducer: per-stage outputs accumulate."""
    return {**left, **right}


class GraphState(TypedDict):
    outputs: Annotated[dict[str, str], merge_outputs]


def _sync_node(sid: str) -> Callable[[GraphState], dict[str, Any]]:
    def node(state: GraphState) -> dict[str, Any]:
        return {"outputs": {sid: f"{sid}/out: ok\n"}}

    return node


def _async_node(sid: str) -> Callable[[GraphState], Any]:
    async def node(state: GraphState) -> dict[str, Any]:
        return {"outputs": {sid: f"{sid}/out: ok\n"}}

    return node


def build_graph(dag: Dag, mode: LangGraphMode) -> Any:
    """The DAG as a LangGraph ``StateGraph`` (not compiled)."""
    from langgraph.graph import START, StateGraph

    builder = StateGraph(GraphState)
    make = _sync_node if mode == "sync" else _async_node
    for sid in dag.order:
        builder.add_node(sid, make(sid))  # type: ignore[call-overload]
    for sid in dag.order:
        deps = dag.deps[sid]
        if not deps:
            builder.add_edge(START, sid)
        elif len(deps) == 1:
            builder.add_edge(deps[0], sid)
        else:
            builder.add_edge(list(deps), sid)  # waits for all of them
    return builder


def langgraph_available() -> bool:
    """Whether the ``bench`` extra (langgraph + its SQLite checkpointer) is installed."""
    try:
        import langgraph.checkpoint.sqlite
        import langgraph.graph  # noqa: F401
    except ImportError:
        return False
    return True


def _count(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        checkpoints = conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        writes = conn.execute("SELECT COUNT(*) FROM writes").fetchone()[0]
    finally:
        conn.close()
    return int(checkpoints), int(writes)


def _run_config(dag: Dag) -> dict[str, Any]:
    # one superstep per layer, plus the input step; the chain needs one per stage
    return {"configurable": {"thread_id": "bench"}, "recursion_limit": len(dag) + 10}


def _check(dag: Dag, result: dict[str, Any]) -> None:
    if len(result["outputs"]) != len(dag):
        raise RuntimeError(f"LangGraph ran {len(result['outputs'])} of {len(dag)} nodes")


def _langgraph_sync(dag: Dag, db: Path, synchronous: str) -> tuple[float, float]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        saver = SqliteSaver(conn)
        saver.setup()
        t0 = time.perf_counter()
        graph = build_graph(dag, "sync").compile(checkpointer=saver)
        t1 = time.perf_counter()
        result = graph.invoke({"outputs": {}}, _run_config(dag), durability="sync")
        t2 = time.perf_counter()
    finally:
        conn.close()
    _check(dag, result)
    return t1 - t0, t2 - t1


async def _langgraph_async(dag: Dag, db: Path, synchronous: str) -> tuple[float, float]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(db) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={synchronous}")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        t0 = time.perf_counter()
        graph = build_graph(dag, "async").compile(checkpointer=saver)
        t1 = time.perf_counter()
        result = await graph.ainvoke({"outputs": {}}, _run_config(dag), durability="sync")
        t2 = time.perf_counter()
    _check(dag, result)
    return t1 - t0, t2 - t1


def run_langgraph(
    dag: Dag, workdir: Path, *, mode: LangGraphMode = "sync", synchronous: str = "FULL"
) -> Sample:
    """Execute ``dag`` once with LangGraph + its SQLite checkpointer on a file in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "checkpoints.db"
    if mode == "sync":
        setup, run = _langgraph_sync(dag, db, synchronous)
    else:
        setup, run = anyio.run(_langgraph_async, dag, db, synchronous, backend="asyncio")
    checkpoints, writes = _count(db)
    return Sample("langgraph", dag.shape, len(dag), setup, run, checkpoints, writes)


# -- the driver ----------------------------------------------------------------------------


def measure(
    dag: Dag,
    engines: Sequence[Engine],
    *,
    reps: int,
    concurrency: int,
    lg_mode: LangGraphMode,
    lg_synchronous: str,
    warmup: int = 1,
) -> list[Sample]:
    """``reps`` runs of each engine, interleaved (A, B, A, B, ...), each in a fresh temp dir.

    ``warmup`` untimed runs of each engine come first (imports, caches, code paths).
    """
    samples: list[Sample] = []
    for rep in range(-warmup, reps):
        for engine in engines:
            gc.collect()
            with tempfile.TemporaryDirectory(prefix=f"bench-{engine}-") as tmp:
                if engine == "stageflow":
                    sample = run_stageflow(dag, Path(tmp), concurrency=concurrency)
                else:
                    sample = run_langgraph(dag, Path(tmp), mode=lg_mode, synchronous=lg_synchronous)
            if rep >= 0:
                samples.append(sample)
    return samples


@dataclass(frozen=True)
class Row:
    engine: Engine
    shape: Shape
    stages: int
    reps: int
    setup_ms: float
    run_ms: float
    per_stage_ms: float
    writes: int
    extra: int


def summarize(samples: Sequence[Sample]) -> list[Row]:
    """Median per (shape, engine), in first-seen order."""
    keys = list(dict.fromkeys((s.shape, s.engine) for s in samples))
    rows = []
    for shape, engine in keys:
        group = [s for s in samples if s.shape == shape and s.engine == engine]
        run_s = statistics.median(s.run_s for s in group)
        rows.append(
            Row(
                engine=engine,
                shape=shape,
                stages=group[0].stages,
                reps=len(group),
                setup_ms=statistics.median(s.setup_s for s in group) * 1000,
                run_ms=run_s * 1000,
                per_stage_ms=run_s / group[0].stages * 1000,
                writes=group[-1].writes,
                extra=group[-1].extra,
            )
        )
    return rows


def render(rows: Sequence[Row], out: TextIO) -> None:
    """A compact table, then the stageflow/LangGraph ratio per shape.

    ``ms/stage`` is the run time (not the set-up) over the number of stages: the per-stage
    orchestration overhead.
    """
    head = (
        f"{'shape':<8} {'engine':<10} {'stages':>6} {'reps':>4} {'setup ms':>9} "
        f"{'run ms':>9} {'total ms':>9} {'ms/stage':>9}  writes"
    )
    out.write(head + "\n" + "-" * len(head) + "\n")
    for r in rows:
        what = (
            f"{r.writes} events, {r.extra} artifacts"
            if r.engine == "stageflow"
            else f"{r.writes} checkpoints, {r.extra} write rows"
        )
        out.write(
            f"{r.shape:<8} {r.engine:<10} {r.stages:>6} {r.reps:>4} {r.setup_ms:>9.1f} "
            f"{r.run_ms:>9.1f} {r.setup_ms + r.run_ms:>9.1f} {r.per_stage_ms:>9.3f}  {what}\n"
        )
    for shape in dict.fromkeys(r.shape for r in rows):
        by = {r.engine: r for r in rows if r.shape == shape}
        if "stageflow" in by and "langgraph" in by:
            ratio = by["stageflow"].per_stage_ms / by["langgraph"].per_stage_ms
            out.write(f"{shape}: stageflow/LangGraph per-stage overhead = {ratio:.2f}x\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--stages", type=int, default=200, help="stages in the DAG (default 200)")
    p.add_argument("--reps", type=int, default=5, help="repetitions per engine (default 5)")
    p.add_argument("--shape", choices=["layered", "chain", "both"], default="both")
    p.add_argument("--engine", choices=["stageflow", "langgraph", "both"], default="both")
    p.add_argument(
        "--concurrency", type=int, default=10, help="stageflow max_concurrent_agents (default 10)"
    )
    p.add_argument(
        "--lg-mode", choices=["sync", "async"], default="sync", help="SqliteSaver or Async..."
    )
    p.add_argument(
        "--lg-synchronous",
        choices=SYNCHRONOUS_LEVELS,
        default=None,
        help="PRAGMA synchronous for LangGraph's connection (default: the one stageflow uses)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per engine (default 1)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.stages < 1 or args.reps < 1 or args.warmup < 0:
        p.error("--stages and --reps must be at least 1, --warmup at least 0")
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be between 1 and 64 (the template limit)")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the benchmark and print the table; returns the exit code."""
    out = out or sys.stdout
    args = parse_args(argv)
    shapes: list[Shape] = ["layered", "chain"] if args.shape == "both" else [args.shape]
    engines: list[Engine] = ["stageflow", "langgraph"] if args.engine == "both" else [args.engine]
    if "langgraph" in engines and not langgraph_available():
        sys.stderr.write(
            "langgraph is not installed: pip install 'stageflow[bench]', "
            "or measure stageflow alone with --engine stageflow\n"
        )
        return 2
    lg_synchronous = args.lg_synchronous or stageflow_synchronous()
    samples: list[Sample] = []
    for shape in shapes:
        samples += measure(
            make_dag(shape, args.stages, args.seed),
            engines,
            reps=args.reps,
            concurrency=args.concurrency,
            lg_mode=args.lg_mode,
            lg_synchronous=lg_synchronous,
            warmup=args.warmup,
        )
    saver = "SqliteSaver" if args.lg_mode == "sync" else "AsyncSqliteSaver"
    out.write(
        f"stageflow: InstantRunner (no model, one artifact per stage), concurrency "
        f"{args.concurrency}, synchronous={stageflow_synchronous()} | LangGraph: {saver}, "
        f'durability="sync", synchronous={lg_synchronous} | WAL | medians of {args.reps}\n'
    )
    render(summarize(samples), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
