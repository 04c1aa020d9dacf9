"""Glob brace expansion, before and after issue 11: time and peak memory of hostile patterns.

Before, ``{a,b}`` groups were expanded in the server process (``glob_parts`` below, the old
code, kept here verbatim for the comparison) and every expansion compiled to a regex: sixteen
groups took seconds, forty grew the server's memory without bound, and nested braces raised
RecursionError. After, ``Workspace.glob`` sends the pattern to the search child, which counts
the alternatives on a parse tree and refuses the pattern over the bound.

Each case runs in a fresh subprocess per side, interleaved (before, after, before, after ...),
so peak memory (``VmHWM``, the peak resident set) belongs to that case alone. The old side
runs under an address-space cap (``--cap-mb``) and a time limit (``--timeout``) so the machine
survives it;
"MemoryError at the cap" means it would have grown further. For the new side the server
process and the search child are measured apart (the child's figure from the same script on
the same job). "before" times the server-side expansion and compilation only: the old Glob
then also started a search child for the matching, as the new one does, so for a normal
pattern the new side's time is mostly that child's start.

    python benchmarks/glob_braces.py [--cases x12,x16,x40,nested] [--reps 3] [--cap-mb 2048]
                                     [--timeout 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CASES: dict[str, str] = {
    "normal": "**/*.{py,ts,md}",
    "x4": "{a,b}" * 4,
    "x12": "{a,b}" * 12,
    "x14": "{a,b}" * 14,
    "x16": "{a,b}" * 16,
    "x40": "{a,b}" * 40,
    "nested": "{a," * 1000 + "b" + "}" * 1000,
}

# the server-side expansion before issue 11 (stageflow/workspace/search.py), verbatim
OLD_CODE = r"""
import re
from pathlib import Path

def glob_parts(pattern):
    if not pattern or not pattern.strip():
        raise ValueError("empty")
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise ValueError("relative")
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out = []
    for alt in match.group(1).split(","):
        out.extend(glob_parts(head + alt + tail))
    return out

def glob_regex(pattern):
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?"); i += 3; continue
        if pattern.startswith("**", i):
            out.append(".*"); i += 2; continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            close = pattern.find("]", i + 2)
            if close == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = close + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))
"""

BEFORE = textwrap.dedent(
    """
    import json, resource, signal, sys, time
    cap = int(sys.argv[2]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    exec(sys.argv[3])
    pattern, limit = sys.argv[1], float(sys.argv[4])
    class OutOfTime(Exception):
        pass
    def stop(signum, frame):
        raise OutOfTime
    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, limit)  # the expansion is Python: it gets the signal
    t0 = time.perf_counter()
    try:
        regexes = [glob_regex(p) for p in glob_parts(pattern)]
        outcome = f"{len(regexes)} regexes"
    except MemoryError:
        regexes = None
        outcome = "MemoryError at the cap"
    except RecursionError:
        outcome = "RecursionError"
    except OutOfTime:
        outcome = f"still expanding after {limit:g} s"
    seconds = time.perf_counter() - t0
    regexes = None
    peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    peak = peak[0] / 1024
    print(json.dumps({"seconds": seconds, "server_mb": peak, "child_mb": 0.0,
                      "outcome": outcome}))
    """
)

AFTER = textwrap.dedent(
    """
    import json, subprocess, sys, tempfile, time
    from pathlib import Path
    import stageflow.workspace.root as root_module
    from stageflow.errors import ToolError
    from stageflow.workspace.root import Workspace
    from stageflow.workspace.search import CHILD

    jobs = []
    real = root_module.run_search
    def recording(job, *args):
        jobs.append(job)
        return real(job, *args)
    root_module.run_search = recording

    root = Path(tempfile.mkdtemp())
    for rel in ("src/a.py", "src/b.ts", "docs/c.md", "ab/ba.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    ws = Workspace(root)
    ws.glob("*")  # warm: the first child start pays for reading the script
    t0 = time.perf_counter()
    try:
        found = ws.glob(sys.argv[1])
        outcome = f"{len(found.splitlines())} line(s)"
    except ToolError as exc:
        outcome = "refused: " + str(exc).split("(")[0].split(";")[0][-60:]
    seconds = time.perf_counter() - t0
    server = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    server = server[0] / 1024
    # the search child's own peak: the same script on the same job, run by path with -I -S,
    # reporting VmHWM at exit (ru_maxrss would count the parent's pages from before exec)
    probe = (
        "import atexit, runpy, sys\\n"
        "def hwm():\\n"
        "    for line in open('/proc/self/status'):\\n"
        "        if line.startswith('VmHWM:'):\\n"
        "            sys.stderr.write(line.split()[1])\\n"
        "atexit.register(hwm)\\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(CHILD)],
                          input=json.dumps(jobs[-1]).encode(), capture_output=True)
    child = int(done.stderr.decode().strip().splitlines()[-1]) / 1024
    print(json.dumps({"seconds": seconds, "server_mb": server, "child_mb": child,
                      "outcome": outcome}))
    """
)


@dataclass
class Side:
    """One side's measurements of one case over the repetitions."""

    seconds: list[float] = field(default_factory=list)
    server_mb: list[float] = field(default_factory=list)
    child_mb: list[float] = field(default_factory=list)
    outcome: str = ""

    def add(self, row: dict[str, Any]) -> None:
        self.seconds.append(float(row["seconds"]))
        self.server_mb.append(float(row["server_mb"]))
        self.child_mb.append(float(row["child_mb"]))
        self.outcome = str(row["outcome"])

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": statistics.median(self.seconds),
            "server_mb": max(self.server_mb),
            "child_mb": max(self.child_mb),
            "outcome": self.outcome,
        }


def _run(argv: list[str], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"seconds": timeout, "server_mb": 0.0, "child_mb": 0.0, "outcome": "timed out"}
    if done.returncode != 0 or not done.stdout.strip():
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"seconds": 0.0, "server_mb": 0.0, "child_mb": 0.0, "outcome": said[:80]}
    row: dict[str, Any] = json.loads(done.stdout)
    return row


def measure(case: str, *, reps: int, cap_mb: int, timeout: float) -> dict[str, Any]:
    """Both sides of one case, interleaved ``reps`` times."""
    pattern = CASES[case]
    before, after = Side(), Side()
    for _ in range(reps):
        limit = str(max(1.0, timeout - 5.0))  # it stops itself first, to report its memory
        old_side = [sys.executable, "-c", BEFORE, pattern, str(cap_mb), OLD_CODE, limit]
        before.add(_run(old_side, timeout))
        after.add(_run([sys.executable, "-c", AFTER, pattern], timeout))
    old, new = before.summary(), after.summary()
    ratio = old["seconds"] / new["seconds"] if new["seconds"] else float("nan")
    return {"case": case, "before": old, "after": new, "time_ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="normal,x12,x14,x16,x40,nested")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cap-mb", type=int, default=2048, help="old side's address space")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    rows = [measure(c, reps=args.reps, cap_mb=args.cap_mb, timeout=args.timeout) for c in cases]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"reps {args.reps}, old side capped at {args.cap_mb} MB and {args.timeout:g} s")
    head = f"{'case':<7} {'side':<6} {'median s':>9} {'server MB':>10} {'child MB':>9}  outcome"
    print(head)
    print("-" * len(head))
    for row in rows:
        for side in ("before", "after"):
            m = row[side]
            print(
                f"{row['case']:<7} {side:<6} {m['seconds']:>9.3f} {m['server_mb']:>10.1f} "
                f"{m['child_mb']:>9.1f}  {m['outcome']}"
            )
        print(f"{'':<7} time before/after: {row['time_ratio']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
