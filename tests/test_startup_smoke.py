"""The start-up benchmark still runs, and ``stageflow serve`` stays light: its import path
never loads the Anthropic SDK (which alone costs over a second)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"

pytestmark = pytest.mark.slow


def load_benchmark(name: str = "startup_under_test") -> ModuleType:
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


def test_startup_benchmark_times_both_servers_and_reports_the_ratio() -> None:
    bench = load_benchmark()
    result = bench.measure(runs=1, timeout=60)
    assert len(result.stageflow.seconds) == len(result.minimal.seconds) == 1
    assert all(0 < s < 60 for s in result.stageflow.seconds + result.minimal.seconds)
    table = bench.render(result)
    assert "stageflow serve (stdio)" in table
    assert "minimal MCPServer" in table
    assert f"{result.ratio:.2f}" in table


def test_time_initialize_reports_a_server_that_exits_without_answering(tmp_path: Path) -> None:
    bench = load_benchmark()
    quits = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="boom"):
        bench.time_initialize(quits, cwd=tmp_path, timeout=30)


def test_serve_import_path_does_not_load_anthropic(tmp_path: Path) -> None:
    env = {**os.environ, "STAGEFLOW_RUNNER": "offline"}
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "stageflow",
            "serve",
            "--project",
            str(tmp_path),
        ],
        stdin=subprocess.DEVNULL,  # end of input at once: the stdio server starts and exits
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if "|" in line}
    assert "mcp.server.mcpserver" in imported  # the check sees the server's imports at all
    assert not {m for m in imported if m.split(".")[0] == "anthropic"}
    assert proc.stdout == b""  # nothing but protocol on stdout, and there was none


def test_answering_initialize_builds_no_tool_and_imports_no_runner(tmp_path: Path) -> None:
    """What ``initialize`` waits for stays small: the tools and resources are registered on the
    first listing or call (after ``initialize``), the runners' modules on the first stage."""
    init = (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
        '"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}\n'
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "stageflow",
            "serve",
            "--project",
            str(tmp_path),
        ],
        input=init.encode(),
        capture_output=True,
        env={**os.environ, "STAGEFLOW_RUNNER": "offline"},
        timeout=60,
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    assert b'"id":1,"result"' in proc.stdout  # initialize was answered
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if "|" in line}
    deferred = {
        "stageflow.tools.status",  # the tool modules: their schemas are the costly part
        "stageflow.tools.briefs",
        "stageflow.server.resources",
        "stageflow.subagents.command",  # runners and the tool loop: on the first stage
        "stageflow.subagents.tool_loop",
        "stageflow.workspace.shell",
        "stageflow.cli.app",  # the other commands' machinery
        "stageflow.cli.commands",
    }
    assert "stageflow.server.app" in imported
    assert not deferred & imported, deferred & imported
