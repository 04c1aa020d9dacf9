"""Orchestration cost of a debate: the moderator on the cheap model versus on the
participants' model.

Runs ``consensus_building`` (three participants on opus and sonnet, at least two rounds) with
the API runner against the Messages API stand-in (the real ``anthropic`` client over loopback
HTTP, the stand-in's deterministic usage and the dated price table), twice: the moderator on
``[orchestrator] model = "haiku"`` (the default), then on the participants' model (opus).
Prints, for each, the total spend from the ledger, the orchestration spend (the moderator's
requests) and its share of the total, and the ratio of the two orchestration costs (goal:
at most 0.20).

    python benchmarks/orchestration_cost.py [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stageflow.cli.main import main as stageflow  # noqa: E402
from stageflow.store.store import Store  # noqa: E402
from tests.standin import StandIn  # noqa: E402
from tests.standin.project import make_project  # noqa: E402
from tests.subagents.debate.standin_debate import DebateStandIn  # noqa: E402

QUESTION = "Should we replace the hand-written SQL layer with an ORM?"


def _ledger(root: Path) -> tuple[float, float, int]:
    async def read() -> tuple[float, float, int]:
        async with await Store.open(root / ".stageflow" / "state.db") as store:
            [run] = await store.list_runs(limit=1)
            rows = await store.ledger.list(run.run_id)
            events = await store.load_events(run.run_id)
        verdicts = [e.event for e in events if e.event.type == "debate_verdict"]
        orch = sum(v.cost_usd for v in verdicts)  # type: ignore[union-attr]
        return sum(r.spent_usd for r in rows), orch, len(verdicts)

    return anyio.run(read)


def scenario(moderator: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, StandIn(respond=DebateStandIn()) as api:
        root = make_project(Path(tmp) / "project")
        (root / ".stageflow").mkdir(exist_ok=True)
        (root / ".stageflow" / "config.toml").write_text(
            f'[orchestrator]\nmodel = "{moderator}"\n', encoding="utf-8"
        )
        env = {
            "STAGEFLOW_RUNNER": "anthropic",
            "ANTHROPIC_API_KEY": "bench",
            "ANTHROPIC_BASE_URL": api.base_url,
            "STAGEFLOW_HOME": str(Path(tmp) / "home"),
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                argv = ["run", "consensus_building", "--task", QUESTION, "--project", str(root)]
                code = stageflow(argv, out=io.StringIO())
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        total, orch, rounds = _ledger(root)
    return {
        "moderator": moderator,
        "exit": code,
        "rounds": rounds,
        "total_usd": round(total, 6),
        "orchestration_usd": round(orch, 6),
        "share": round(orch / total, 4) if total else 0.0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cheap, dear = scenario("haiku"), scenario("opus")
    ratio = (
        cheap["orchestration_usd"] / dear["orchestration_usd"] if dear["orchestration_usd"] else 0
    )
    out = {"cheap": cheap, "participants_model": dear, "ratio": round(ratio, 4), "goal": 0.2}
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        for row in (cheap, dear):
            sys.stdout.write(
                f"moderator {row['moderator']:<6} rounds {row['rounds']}  total "
                f"${row['total_usd']:.4f}  orchestration ${row['orchestration_usd']:.4f} "
                f"({row['share']:.1%} of total)\n"
            )
        sys.stdout.write(f"orchestration on haiku / on opus: {ratio:.3f} (goal <= 0.20)\n")
    return out


if __name__ == "__main__":
    main()
