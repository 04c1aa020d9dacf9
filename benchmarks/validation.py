"""Validation under attack: time and peak memory of the commands users run on hostile files.

Each case runs the real command (``stageflow.cli.main.main``) in a fresh child process, under an
address-space limit and a time limit, so an unbounded version fails instead of taking the
machine down. With ``--before REF`` the same cases also run against the package as it was at
git revision ``REF`` (extracted with ``git archive``), interleaved with the current code in one
run, and the table shows both side by side with their ratio:

- ``chain1000``: ``validate`` of 1,000 chained stages (each needs the one before);
- ``chain8000``: ``validate`` of 8,000 chained stages (now refused by the stage bound);
- ``checks8000``: the cross-stage checks alone (``check_spec``) on 8,000 chained stages built
  in memory, past the stage bound: the upstream relation, linear now, was quadratic;
- ``huge10mb``: ``validate`` of a 10 MB template (now refused by the size bound);
- ``laughs``: ``templates --json`` in a project with a 1.3 KB billion-laughs template;
- ``laughs_agent``: ``agents --json`` with a billion-laughs agent file;
- ``deep_agent``: ``agents`` with a 100 KB deeply nested agent file;
- ``deep_toml``: ``templates`` with a 20 KB deeply nested TOML template.

    python benchmarks/validation.py [--before REF] [--cases a,b] [--memory-mb 2048]
                                    [--timeout 60] [--small] [--json]

"peak MB" is the child's maximum resident set (``ru_maxrss``); "out" is what the command
printed. The machine is shared: compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tests.workflows.hostile when run as a script; appended, so that in a child the PYTHONPATH
# given (the code under measurement) comes first for ``stageflow``
sys.path.append(str(ROOT))

from tests.workflows.hostile import (  # noqa: E402 - after the path set-up above
    billion_laughs_agent,
    billion_laughs_template,
    chained_template,
    deep_agent,
    deep_toml_template,
    huge_template,
)

CASES = (
    "chain1000",
    "chain8000",
    "checks8000",
    "huge10mb",
    "laughs",
    "laughs_agent",
    "deep_agent",
    "deep_toml",
)


@dataclass(frozen=True)
class Sample:
    """One case on one version of the code."""

    case: str
    version: str
    seconds: float
    peak_mb: float
    outcome: str  # "exit 0", "exit 1", "timeout", "killed (signal 9)", ...
    out_bytes: int


def write_inputs(base: Path, small: bool) -> dict[str, list[str]]:
    """Create the files of every case under ``base``; the CLI arguments of each case."""
    n_long, n_chain = (300, 1500) if small else (1000, 8000)
    size = 256 * 1024 if small else 10 * 1024 * 1024
    files = {
        "chain1000.yaml": chained_template(n_long),
        "chain8000.yaml": chained_template(n_chain),
        "huge10mb.yaml": huge_template(size),
    }
    for name, text in files.items():
        (base / name).write_text(text, encoding="utf-8")
    projects = {
        "laughs": ("workflows/laughs.yaml", billion_laughs_template(levels=6 if small else 9)),
        "laughs_agent": ("agents/laughs.md", billion_laughs_agent(levels=6 if small else 9)),
        "deep_agent": ("agents/deep.md", deep_agent()),
        "deep_toml": ("workflows/deep.toml", deep_toml_template()),
    }
    for case, (rel, text) in projects.items():
        path = base / case / ".stageflow" / rel
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    return {
        "chain1000": ["validate", str(base / "chain1000.yaml")],
        "chain8000": ["validate", str(base / "chain8000.yaml")],
        "checks8000": [str(n_chain)],
        "huge10mb": ["validate", str(base / "huge10mb.yaml")],
        "laughs": ["templates", "--json", "--project", str(base / "laughs")],
        "laughs_agent": ["agents", "--json", "--project", str(base / "laughs_agent")],
        "deep_agent": ["agents", "--project", str(base / "deep_agent")],
        "deep_toml": ["templates", "--project", str(base / "deep_toml")],
    }


class _Counter(io.TextIOBase):
    """Counts what a command prints (a billion laughs prints gigabytes) and keeps none of it."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, text: str) -> int:
        self.count += len(text.encode("utf-8", errors="replace"))
        return len(text)


def child(case: str, argv: list[str]) -> int:
    """In the child: run the case and print how many bytes it wrote (the parent times it)."""
    out = _Counter()
    if case == "checks8000":
        from stageflow.workflows.spec import WorkflowSpec
        from stageflow.workflows.validate import check_spec

        n = int(argv[0])
        stages = [
            {"id": f"s{i}", "run": "echo", "produces": ["out"]}
            | ({"depends_on": [f"s{i - 1}"], "needs": [f"s{i - 1}.out"]} if i else {})
            for i in range(n)
        ]
        spec = WorkflowSpec.model_validate({"name": "chain", "stages": stages})
        code = 1 if check_spec(spec) else 0
    else:
        from stageflow.cli.main import main

        code = main(argv, out=out)
    sys.stdout.write(f"{out.count}\n")
    return code


def measure(
    case: str,
    argv: list[str],
    version: str,
    code_dir: Path,
    home: Path,
    limit_mb: int,
    timeout: float,
) -> Sample:
    """Run one case in a child process with ``code_dir`` first on its path and its own
    ``STAGEFLOW_HOME`` under ``home``."""
    env = {**os.environ, "PYTHONPATH": str(code_dir), "STAGEFLOW_RUNNER": "offline"}
    env["STAGEFLOW_HOME"] = str(Path(tempfile.mkdtemp(prefix="home-", dir=home)))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", case, *argv],
        cwd=code_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit,  # noqa: PLW1509 - the benchmark runs no threads
    )
    outcome = ""
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
        outcome = f"timeout > {timeout:.0f} s"
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the largest child so far, see below
    peak_mb = usage.ru_maxrss / 1024
    if not outcome:
        rc = proc.returncode
        outcome = f"exit {rc}" if rc >= 0 else f"killed (signal {-rc})"
        if rc == 1 and not stdout.strip():
            outcome = "crashed (exit 1, no output)"
    written = stdout.decode(errors="replace").strip().splitlines()
    out_bytes = int(written[-1]) if written and written[-1].isdigit() else -1
    return Sample(case, version, seconds, peak_mb, outcome, out_bytes)


def _peak_of(run: Callable[[], Sample]) -> Sample:
    """``ru_maxrss`` of RUSAGE_CHILDREN is a maximum over all children so far, so each sample
    runs in its own intermediate process whose children are only that one."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the intermediate process
        os.close(read)
        sample = run()
        os.write(write, json.dumps(asdict(sample)).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return Sample(**json.loads(b"".join(chunks)))


def extract(ref: str, into: Path) -> Path:
    """The ``stageflow`` package at git revision ``ref``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "stageflow"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def table(samples: list[Sample], versions: list[str]) -> str:
    """Cases as rows, versions side by side, and after/before ratios of time and memory."""
    by = {(s.case, s.version): s for s in samples}
    cases = list(dict.fromkeys(s.case for s in samples))
    head = ["case"]
    for v in versions:
        head += [f"{v} s", f"{v} peak MB", f"{v} out", f"{v} outcome"]
    if len(versions) == 2:
        head += ["time ratio", "memory ratio"]
    rows = [head]
    for case in cases:
        row = [case]
        for v in versions:
            s = by[(case, v)]
            out = "-" if s.out_bytes < 0 else _size(s.out_bytes)
            row += [f"{s.seconds:.2f}", f"{s.peak_mb:.0f}", out, s.outcome]
        if len(versions) == 2:
            a, b = by[(case, versions[1])], by[(case, versions[0])]
            row += [f"{a.seconds / b.seconds:.3f}", f"{a.peak_mb / b.peak_mb:.2f}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", metavar="REF", help="also measure the code at this git revision")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    p.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per case")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    p.add_argument("--small", action="store_true", help="small inputs (the smoke test)")
    p.add_argument("--json", action="store_true", help="print the samples as JSON")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1:])
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    with tempfile.TemporaryDirectory(prefix="sf-bench-validation-") as tmp:
        base = Path(tmp)
        (base / "inputs").mkdir()
        inputs = write_inputs(base / "inputs", args.small)
        versions = [("after", ROOT)]
        if args.before:
            (base / "before").mkdir()
            versions.insert(0, (f"before ({args.before})", extract(args.before, base / "before")))
        samples: list[Sample] = []
        for case in cases:
            for name, code in versions:  # interleaved: both see the same machine load
                samples.append(
                    _peak_of(
                        lambda c=case, n=name, d=code: measure(
                            c, inputs[c], n, d, base, args.memory_mb, args.timeout
                        )
                    )
                )
    if args.json:
        sys.stdout.write(json.dumps([asdict(s) for s in samples], indent=2) + "\n")
    else:
        sys.stdout.write(table(samples, [name for name, _ in versions]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
