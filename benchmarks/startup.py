"""Start-up benchmark: spawn-to-``initialize``-answered time of ``stageflow serve`` (stdio) next
to a minimal ``MCPServer`` with one tool.

Each round spawns both servers (interleaved, alternating which goes first), sends the
handshake-era ``initialize`` request at once and stops the clock when its response arrives.
One untimed warm-up of each comes first (``.pyc`` compilation, a fresh ``state.db``). Prints
medians, ranges and the ratio; the target is a ratio of at most 1.3.

    python benchmarks/startup.py [--runs 10] [--timeout 30] [--json]

The environment is inherited (so ``STAGEFLOW_RUNNER`` etc. apply); the project is a temporary
directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TARGET_RATIO = 1.3

MINIMAL_SERVER = '''
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("minimal", log_level="WARNING")


@mcp.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


mcp.run()
'''

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "startup-benchmark", "version": "0"},
    },
}


@dataclass
class Series:
    """The timings of one server, in seconds."""

    name: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class Result:
    stageflow: Series
    minimal: Series

    @property
    def ratio(self) -> float:
        return self.stageflow.median / self.minimal.median


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    for line in iter(stream.readline, b""):
        lines.put(line)
    lines.put(None)


def time_initialize(cmd: Sequence[str], *, cwd: Path, timeout: float) -> float:
    """Seconds from spawning ``cmd`` to the response to ``initialize`` on its stdout."""
    with tempfile.TemporaryFile() as errlog:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog
        )
        assert proc.stdin is not None and proc.stdout is not None
        lines: queue.Queue[bytes | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            with contextlib.suppress(BrokenPipeError):  # it died: reported at EOF below
                proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
                proc.stdin.flush()
            deadline = start + timeout
            while True:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    raise RuntimeError(f"no initialize response within {timeout}s") from None
                if line is None:
                    errlog.seek(0)
                    detail = errlog.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"server closed stdout before answering:\n{detail}")
                message = json.loads(line)
                if message.get("id") == INITIALIZE["id"]:
                    elapsed = time.perf_counter() - start
                    if "result" not in message:
                        raise RuntimeError(f"initialize failed: {message}")
                    return elapsed
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()  # end of input: a stdio server exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            reader.join(timeout=10)  # it sees EOF once the process is gone
            proc.stdout.close()


def measure(runs: int = 10, *, timeout: float = 30.0) -> Result:
    """Time ``runs`` start-ups of each server, interleaved, after one warm-up each."""
    with tempfile.TemporaryDirectory(prefix="stageflow-startup-") as tmp:
        project = Path(tmp)
        commands = {
            "stageflow serve": [
                sys.executable,
                "-m",
                "stageflow",
                "serve",
                "--project",
                str(project),
            ],
            "minimal MCPServer": [sys.executable, "-c", MINIMAL_SERVER],
        }
        timings: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():
            time_initialize(cmd, cwd=project, timeout=timeout)  # warm-up, not counted
        order = list(commands)
        for i in range(runs):
            for name in order if i % 2 == 0 else reversed(order):
                timings[name].append(time_initialize(commands[name], cwd=project, timeout=timeout))
    return Result(
        stageflow=Series("stageflow serve (stdio)", timings["stageflow serve"]),
        minimal=Series("minimal MCPServer, 1 tool", timings["minimal MCPServer"]),
    )


def render(result: Result) -> str:
    """The result as a small text table."""
    rows = [
        f"{'server':<28} {'median':>8} {'min':>8} {'max':>8}   runs",
    ]
    for s in (result.stageflow, result.minimal):
        rows.append(
            f"{s.name:<28} {s.median * 1000:>6.0f}ms {min(s.seconds) * 1000:>6.0f}ms "
            f"{max(s.seconds) * 1000:>6.0f}ms   {len(s.seconds)}"
        )
    verdict = "met" if result.ratio <= TARGET_RATIO else "NOT met"
    rows.append(
        f"ratio stageflow/minimal (medians): {result.ratio:.2f} "
        f"(target <= {TARGET_RATIO}: {verdict})"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="timed start-ups per server")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per start-up")
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    args = parser.parse_args(argv)
    result = measure(args.runs, timeout=args.timeout)
    if args.json:
        payload = {
            s.name: {"median_s": s.median, "seconds": s.seconds}
            for s in (result.stageflow, result.minimal)
        }
        print(json.dumps({**payload, "ratio": result.ratio}, indent=2))
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
