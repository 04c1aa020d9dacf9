"""What the model receives: the size of each tool's structured result and of the tool list.

Claude Code hands the model a tool's ``structuredContent`` (not the short text), so its size is
what every poll costs. This drives real runs over an in-process MCP client (offline runner):
``feature_parallel`` to its release gate (after approving the design) and ``bugfix`` to its
first gate, and prints the bytes of ``workflow_status`` (default and ``detail="full"``),
``workflow_templates`` and the tool definitions. ``--json`` prints the figures as JSON.

    python benchmarks/result_sizes.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import ElicitResult

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stageflow.config import load_settings  # noqa: E402
from stageflow.server.app import build_server  # noqa: E402


async def _person(context: Any, params: Any) -> ElicitResult:
    """The person at the client: the built-in gates ask them (by: human); they approve."""
    return ElicitResult(action="accept", content={"decision": "approve", "name": "bench"})


def size(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


async def _call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool}: {result.content}")
    assert result.structured_content is not None
    return result.structured_content


async def _wait_gate(client: Client, run_id: str, stage: str) -> dict[str, Any]:
    with anyio.fail_after(120):
        while True:
            status = await _call(client, "workflow_status", {"run_id": run_id, "wait_seconds": 5})
            run = status["run"]
            if any(w["stage"] == stage for w in run.get("waiting", [])):
                return status
            if run["status"] in ("completed", "failed", "cancelled"):
                raise RuntimeError(f"run {run_id} ended before {stage}: {run['status']}")


async def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        os.environ["STAGEFLOW_RUNNER"] = "offline"
        os.environ["STAGEFLOW_HOME"] = str(project / "home")
        server = build_server(load_settings(project), watch_files=False)
        figures: dict[str, Any] = {}
        async with Client(server, elicitation_callback=_person) as client:
            tools = (await client.list_tools()).tools
            figures["tools"] = {
                t.name: size(t.model_dump(mode="json", by_alias=True, exclude_none=True))
                for t in tools
            }
            figures["tools_input_schemas"] = sum(size(t.input_schema) for t in tools)
            figures["workflow_templates"] = size(await _call(client, "workflow_templates", {}))
            run = await _call(
                client, "workflow_start", {"template": "feature_parallel", "task": "CSV export"}
            )
            rid = run["run_id"]
            first = await _wait_gate(client, rid, "design")
            figures["status feature_parallel at design gate"] = size(first)
            await _call(
                client,
                "workflow_approve",
                {"run_id": rid, "stage": "design", "decision": "approve"},
            )
            gate = await _wait_gate(client, rid, "release")
            figures["status feature_parallel at release gate"] = size(gate)
            try:
                full = await _call(client, "workflow_status", {"run_id": rid, "detail": "full"})
                figures["status feature_parallel at release gate, detail=full"] = size(full)
            except RuntimeError:  # a version without detail="full"
                pass
            bug = await _call(client, "workflow_start", {"template": "bugfix", "task": "crash"})
            status = await _call(client, "workflow_status", {"run_id": bug["run_id"]})
            while status["run"]["status"] == "running":
                status = await _call(
                    client, "workflow_status", {"run_id": bug["run_id"], "wait_seconds": 5}
                )
            figures[f"status bugfix ({status['run']['status']})"] = size(status)
            figures["status without run_id (2 runs)"] = size(
                await _call(client, "workflow_status", {})
            )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = anyio.run(measure)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for name, value in figures.items():
        if isinstance(value, dict):
            for tool, n in sorted(value.items()):
                print(f"{'tool ' + tool:55s} {n:7d} B")
        else:
            print(f"{name:55s} {value:7d} B")


if __name__ == "__main__":
    main()
