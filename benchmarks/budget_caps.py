"""Spend against the cap: the attacks of issue 11 point 7, replayed on the stand-in.

Runs ``feature_development`` with the API runner against the Messages API stand-in (the real
``anthropic`` client over loopback HTTP) under a small ``--budget``, three ways: the scripted
agent's normal replies; replies that claim 8,000 output tokens each (within ``max_tokens``, so
billable); and a stage cap of $0.001 on the first stage. Prints, for each, the cap, what the
ledger says was spent, the requests sent and spent/cap (at most 1.0 is the promise; before the
reservations these were 2.1x, 21x and 12.7x).

    python benchmarks/budget_caps.py [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stageflow.cli.main import main as stageflow  # noqa: E402
from stageflow.store.store import Store  # noqa: E402
from tests.standin import StandIn  # noqa: E402
from tests.standin.project import TASK, make_project  # noqa: E402
from tests.standin.wire import Json, message  # noqa: E402

STAGE_CAPPED = """\
name: capped
description: one stage with its own tiny cap
stages:
  - id: architecture
    agent: architect
    produces: [design]
    budget_usd: 0.001
"""


def _claims(api: StandIn, output_tokens: int) -> Callable[[Json], Json]:
    def respond(body: Json) -> Json:
        turn = api.agent.turn(body)
        usage = {"input_tokens": 1000, "output_tokens": min(output_tokens, body["max_tokens"])}
        return message(turn.content, turn.stop_reason, usage=usage)

    return respond


def _spent(root: Path) -> tuple[float, int]:
    async def read() -> tuple[float, int]:
        async with await Store.open(root / ".stageflow" / "state.db") as store:
            [row] = await store.list_runs(limit=1)
            rows = await store.ledger.list(row.run_id)
            return sum(r.spent_usd for r in rows), len(rows)

    return anyio.run(read)


def scenario(name: str, cap: float, *, claim: int | None, template: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, StandIn() as api:
        root = make_project(Path(tmp) / "project")
        if claim is not None:
            api.respond = _claims(api, claim)
        argv = ["run", "feature_development", "--task", TASK, "--budget", str(cap)]
        if template is not None:
            (root / ".stageflow" / "workflows").mkdir(parents=True, exist_ok=True)
            (root / ".stageflow" / "workflows" / "capped.yaml").write_text(template)
            argv = ["run", "capped", "--task", TASK]
        env = {
            "STAGEFLOW_RUNNER": "anthropic",
            "ANTHROPIC_API_KEY": "test",
            "ANTHROPIC_BASE_URL": api.base_url,
            "STAGEFLOW_HOME": str(Path(tmp) / "home"),
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                code = stageflow([*argv, "--project", str(root)], out=io.StringIO())
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        spent, requests = _spent(root)
    return {
        "scenario": name,
        "cap_usd": cap,
        "spent_usd": round(spent, 6),
        "requests": requests,
        "spent_over_cap": round(spent / cap, 3),
        "exit": code,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [
        scenario(f"normal replies, --budget {cap}", cap, claim=None, template=None)
        for cap in (0.01, 0.05, 0.2)
    ]
    rows += [
        scenario(f"8000-output-token replies, --budget {cap}", cap, claim=8000, template=None)
        for cap in (0.01, 0.05, 0.2)
    ]
    rows.append(scenario("stage budget_usd 0.001", 0.001, claim=None, template=STAGE_CAPPED))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'scenario':<52} {'cap':>8} {'spent':>9} {'requests':>8} {'spent/cap':>9} exit")
        for r in rows:
            print(
                f"{r['scenario']:<52} {r['cap_usd']:>8.4f} {r['spent_usd']:>9.5f} "
                f"{r['requests']:>8} {r['spent_over_cap']:>9.3f} {r['exit']:>4}"
            )
    return rows


if __name__ == "__main__":
    main()
