"""Reload latency: an agent file saved -> its new definition served, through the real watcher.

A temporary project with one agent, ``LiveDefinitions`` and the real ``watch`` (watchfiles,
default ``step_ms``). Each save changes the agent's description; the clock stops when
``live.agent(name).description`` returns the new text (polled every millisecond). Saves
alternate an in-place write and an editor-style atomic save (write a temporary file, rename it
over the original), after one untimed warm-up save. Target: p95 under 300 ms.

    python benchmarks/reload_latency.py [--saves 20] [--step-ms 30] [--json]

``measure_reload(saves)`` is the function the knowledge benchmark (``benchmarks/knowledge.py``)
imports for its reload part.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from stageflow.agents.live import LiveDefinitions, ReloadReport
from stageflow.agents.watcher import watch
from stageflow.config import Settings

TARGET_P95_MS = 300.0
AGENT = "bench-agent"
WAIT_LIMIT_S = 10.0  # a save not served by then is a failure, not a slow sample


def _agent_text(description: str) -> str:
    return f"---\nname: {AGENT}\ndescription: {description}\n---\nYou measure reloads.\n"


def _save(path: Path, text: str, *, atomic: bool) -> None:
    if atomic:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    else:
        path.write_text(text, encoding="utf-8")


def _percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile (never below the real sample at that rank)."""
    rank = max(1, math.ceil(q * len(sorted_ms)))
    return sorted_ms[rank - 1]


def summarize(samples: list[tuple[str, float]]) -> dict[str, Any]:
    """p50/p95/max/mean over all samples and per save style."""
    ms = sorted(v for _, v in samples)
    out: dict[str, Any] = {
        "saves": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(_percentile(ms, 0.95), 1),
        "max_ms": round(ms[-1], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "target_p95_ms": TARGET_P95_MS,
    }
    for style in ("in-place", "atomic"):
        part = sorted(v for s, v in samples if s == style)
        if part:
            out[style] = {"p50_ms": round(statistics.median(part), 1), "max_ms": round(part[-1], 1)}
    out["ok"] = out["p95_ms"] < TARGET_P95_MS
    return out


async def measure_reload_async(saves: int = 20, *, step_ms: int = 30) -> dict[str, Any]:
    """Run the watcher on a temporary project and time ``saves`` saves (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="stageflow-reload-") as tmp:
        root = Path(tmp)
        project = root / "project"
        agents = project / ".stageflow" / "agents"
        agents.mkdir(parents=True)
        path = agents / f"{AGENT}.md"
        path.write_text(_agent_text("initial"), encoding="utf-8")
        settings = Settings(
            project=project.resolve(),
            db_path=(project / ".stageflow" / "state.db").resolve(),
            home=root / "home",
        )
        live = LiveDefinitions(settings)
        reloads = 0

        async def on_reload(report: ReloadReport) -> None:
            nonlocal reloads
            reloads += 1

        async def served(text: str) -> None:
            # polled as a reader would see it (the swap happens in the watcher's worker thread)
            with anyio.fail_after(WAIT_LIMIT_S):
                while True:
                    agent = live.agent(AGENT)
                    if agent is not None and agent.description == text:
                        return
                    await anyio.sleep(0.001)

        samples: list[tuple[str, float]] = []
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(
                partial(watch, live, live.dirs, on_reload=on_reload, stop=stop, step_ms=step_ms)
            )
            _save(path, _agent_text("warm-up"), atomic=True)
            await served("warm-up")
            for i in range(saves):
                atomic = i % 2 == 1
                text = f"save {i}"
                t0 = time.perf_counter()
                _save(path, _agent_text(text), atomic=atomic)
                await served(text)
                samples.append(
                    ("atomic" if atomic else "in-place", 1000 * (time.perf_counter() - t0))
                )
            stop.set()
    result = summarize(samples)
    result["step_ms"] = step_ms
    result["reloads"] = reloads  # one per save (+ the warm-up) when saves coalesce as they should
    return result


def measure_reload(saves: int = 20, *, step_ms: int = 30) -> dict[str, Any]:
    """``measure_reload_async`` in its own event loop (for scripts)."""
    result: dict[str, Any] = anyio.run(partial(measure_reload_async, saves, step_ms=step_ms))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--step-ms", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure_reload(args.saves, step_ms=args.step_ms)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"reload latency over {result['saves']} saves (step {result['step_ms']} ms): "
            f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms "
            f"(target p95 < {TARGET_P95_MS:g} ms: {'ok' if result['ok'] else 'MISSED'})"
        )
        for style in ("in-place", "atomic"):
            if style in result:
                part = result[style]
                print(f"  {style:8}: p50 {part['p50_ms']} ms, max {part['max_ms']} ms")
        print(f"  reloads: {result['reloads']} for {result['saves'] + 1} saves")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
