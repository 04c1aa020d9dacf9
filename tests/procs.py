"""Real ``stageflow`` processes for durability tests: start, poll the database, clean up.

Each process writes its stdout and stderr to files (no pipe can fill up and stall it), every
wait has a timeout, and ``Cli.cleanup()`` kills whatever is still alive. The test process
reads the database through its own ``Store`` connection, as another stageflow process would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from stageflow import events as ev
from stageflow.engine.state import RunState, fold
from stageflow.store.store import RunRow, Store

T = TypeVar("T")

PRIMED = """\
import sys
from stageflow.cli.main import main
sys.stderr.write("primed\\n")
sys.stderr.flush()
sys.stdin.readline()
raise SystemExit(main(sys.argv[1:]))
"""


@dataclass
class Proc:
    """One started ``stageflow`` process and the files its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """Both streams so far, for assertion messages."""
        out = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        err = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return f"--- {self.name} (pid {self.pid}) stdout:\n{out}--- stderr:\n{err}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float) -> int:
        """The exit code; kills the process and fails with its output if it overruns."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s\n{self.output()}"
            ) from None

    def is_primed(self) -> bool:
        return self.stderr.startswith("primed")

    def release(self) -> None:
        """Let a process from ``Cli.start_primed`` go."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(b"go\n")
        self.popen.stdin.close()

    def sigkill(self) -> None:
        """SIGKILL the process and reap it, so its pid no longer exists."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=5)


@dataclass
class Cli:
    """A project directory and the environment its ``stageflow`` processes run with."""

    root: Path
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in (self.project, self.home, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.set_script({})

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def script(self) -> Path:
        return self.root / "offline-script.json"

    @property
    def db(self) -> Path:
        return self.project / ".stageflow" / "state.db"

    def set_script(self, script: dict[str, Any]) -> None:
        """(Re)write the offline runner's script; processes started later read the new one."""
        self.script.write_text(json.dumps(script), encoding="utf-8")

    def write_template(self, text: str) -> None:
        text = textwrap.dedent(text)
        name = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("name:")
        )
        d = self.project / ".stageflow" / "workflows"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.yaml").write_text(text, encoding="utf-8")

    def write_config(self, text: str) -> None:
        path = self.project / ".stageflow" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("STAGEFLOW_DB", "STAGEFLOW_PROJECT", "ANTHROPIC_API_KEY")
        }
        env.update(
            STAGEFLOW_RUNNER="offline",
            STAGEFLOW_HOME=str(self.home),
            STAGEFLOW_OFFLINE_SCRIPT=str(self.script),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, name: str, *args: str) -> Proc:
        """Start ``python -m stageflow ARGS --project <project>`` in the background."""
        return self._spawn(name, ["-m", "stageflow", *args], primed=False)

    def start_primed(self, name: str, *args: str) -> Proc:
        """Start a process that imports the ``stageflow`` command, says ``primed`` on stderr
        and waits for ``Proc.release()`` before running ``stageflow ARGS``.

        Importing takes ~0.4 s of CPU, with jitter: processes released together after it
        reach the database within milliseconds of each other, which plain starts do not.
        """
        return self._spawn(name, ["-c", PRIMED, *args], primed=True)

    def _spawn(self, name: str, argv: list[str], *, primed: bool) -> Proc:
        n = len(self.procs)
        out, err = self.logs / f"{n:02d}-{name}.out", self.logs / f"{n:02d}-{name}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen(
                [sys.executable, *argv, "--project", str(self.project)],
                stdin=subprocess.PIPE if primed else subprocess.DEVNULL,
                stdout=fo,
                stderr=fe,
                env=self.env(),
                cwd=self.project,
            )
        proc = Proc(name, popen, out, err)
        self.procs.append(proc)
        return proc

    def call(self, name: str, *args: str, timeout: float = 15.0) -> tuple[int, Proc]:
        """Run a command to its end; returns the exit code and the process (for its output)."""
        proc = self.start(name, *args)
        return proc.wait(timeout), proc

    def cleanup(self) -> None:
        """Kill and reap every process still alive."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(timeout=5)
            if proc.popen.stdin is not None and not proc.popen.stdin.closed:
                proc.popen.stdin.close()

    def dump(self) -> str:
        """Every process's output, for a failure message."""
        return "\n".join(p.output() for p in self.procs)

    # -- the database, read the way another process would ------------------------------------

    def _with_store(self, fn: Callable[[Store], Any]) -> Any:
        async def go() -> Any:
            with anyio.fail_after(10):
                async with await Store.open(self.db) as store:
                    return await fn(store)

        return anyio.run(go)

    def runs(self) -> list[RunRow]:
        if not self.db.exists():
            return []
        rows: list[RunRow] = self._with_store(lambda s: s.list_runs(limit=100))
        return rows

    def run_row(self, run_id: str) -> RunRow:
        row: RunRow = self._with_store(lambda s: s.get_run(run_id))
        return row

    def events(self, run_id: str) -> list[ev.Envelope]:
        envs: list[ev.Envelope] = self._with_store(lambda s: s.load_events(run_id))
        return envs

    def state(self, run_id: str) -> RunState:
        return fold(self.events(run_id))

    def poll(self, what: str, check: Callable[[], T | None], *, limit: float = 20.0) -> T:
        """Call ``check`` until it returns something other than None (or False), bounded by
        ``limit`` seconds; on timeout fail naming ``what`` with every process's output."""
        deadline = time.monotonic() + limit
        while True:
            value = check()
            if value is not None and value is not False:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {limit}s waiting for {what}\n{self.dump()}")
            time.sleep(0.05)  # a poll interval, not a wait for an outcome


def owner_pid(owner: str | None) -> int:
    """The pid part of a ``host:pid:nonce`` owner id."""
    assert owner is not None
    return int(owner.split(":")[1])


def of_type(envs: list[ev.Envelope], kind: type[T]) -> list[T]:
    """The events of one type, in log order."""
    return [e.event for e in envs if isinstance(e.event, kind)]
