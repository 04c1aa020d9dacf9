"""The command runner: executes a ``run:`` stage's shell command from the template.

The command is written by the template's author (trusted), so it runs through ``/bin/sh -c``
in the run's working directory. Run inputs reach it only as environment variables
(``STAGEFLOW_INPUT_<NAME>``), never by interpolation into the command string, so an input such
as ``$(rm -rf ~)`` stays data.

The command runs in its own session (process group). When it times out, is cancelled, or
exits while children it started still run, the whole group gets SIGTERM, a short grace, then
SIGKILL, and the shell is reaped: no process and no zombie of ours outlives the attempt.

Once an agent stage has started in the run's workspace, the command may run code the model
wrote (``pytest`` imports its ``conftest.py``), so the stage runner hands ``run`` a sandbox:
the command then runs in bubblewrap (``workspace.sandbox``) with the same time limit and group
kill, and an allow-listed environment (``shell.bash_env``) plus the ``STAGEFLOW_*`` run
variables; the server's credentials never reach it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import anyio

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import StageTimeout
from stageflow.subagents.offline.text import one_line
from stageflow.workspace.procgroup import collect, stop_group
from stageflow.workspace.sandbox import Sandbox, sandbox_env
from stageflow.workspace.shell import bash_env

__all__ = ["DEFAULT_MAX_OUTPUT", "CommandRunner", "command_env"]

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 64 * 1024


class _Tail:
    """Keeps the last ``limit`` bytes of a stream and counts what it dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        body = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes truncated]\n{body}"
        return body


def _env_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text.replace("\x00", "")  # the OS refuses NUL bytes in the environment


def command_env(
    request: AttemptRequest,
    base: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The command's environment: the inherited one, ``extra`` (the project's settings, such
    as ``STAGEFLOW_TEST_COMMAND``), then run id, stage, task and inputs."""
    env = dict(os.environ if base is None else base)
    env.update(extra or {})
    env["STAGEFLOW_RUN_ID"] = request.run_id
    env["STAGEFLOW_STAGE"] = request.stage.id
    env["STAGEFLOW_ATTEMPT"] = str(request.attempt)
    env["STAGEFLOW_TASK"] = _env_value(request.task)
    for name, value in request.inputs.items():
        key = re.sub(r"[^A-Z0-9_]", "_", name.upper())
        env[f"STAGEFLOW_INPUT_{key}"] = _env_value(value)
    return env


class CommandRunner:
    """Runs command stages; ``model`` is always None and usage is zero."""

    name = "command"

    def __init__(
        self,
        *,
        default_timeout: float = 600.0,
        max_output: int = DEFAULT_MAX_OUTPUT,
        kill_grace: float = 2.0,
        drain_grace: float = 1.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.default_timeout = default_timeout
        self.env = dict(env or {})  # from the project's config, never from run inputs
        self.max_output = max_output
        self.kill_grace = kill_grace  # SIGTERM -> SIGKILL
        self.drain_grace = drain_grace  # after the shell exits, how long to read its pipe

    async def run(
        self, request: AttemptRequest, *, sandbox: Sandbox | None = None
    ) -> AttemptResult:
        """Run ``request.stage.run`` (in ``sandbox`` when given, confined to the workdir);
        raises ``StageTimeout`` when the limit is reached."""
        command = request.stage.run
        if not command:
            raise ValueError(f"stage '{request.stage.id}' is not a command stage")
        limit = request.timeout if request.timeout is not None else self.default_timeout
        request.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["/bin/sh", "-c", command]
        env = command_env(request, extra=self.env)
        if sandbox is not None:
            env = sandbox_env(command_env(request, base=bash_env(), extra=self.env))
            argv = sandbox.wrap(argv, root=request.workdir, env=env)
        tail = _Tail(self.max_output)
        started = time.monotonic()
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=request.workdir,
            env=env,
            start_new_session=True,
        )
        log.info(
            "stage %s: started command pid=%s%s",
            request.stage.id,
            process.pid,
            " in the sandbox" if sandbox is not None else "",
        )
        try:
            with anyio.move_on_after(limit) as deadline:
                await collect(process, tail.add, drain_grace=self.drain_grace)
        finally:
            with anyio.CancelScope(shield=True):
                await stop_group(process, grace=self.kill_grace)
        duration = time.monotonic() - started
        if deadline.cancelled_caught:
            raise StageTimeout(
                f"command stage '{request.stage.id}' timed out after {limit:g}s: "
                f"{one_line(command, 120)!r} (process group killed)"
            )
        code = process.returncode if process.returncode is not None else -1
        output = tail.text()
        names = request.stage.produces or ["output"]
        status = "passed" if code == 0 else "failed"
        return AttemptResult(
            status=status,
            summary=_summary(command, code, duration, output),
            artifacts=dict.fromkeys(names, output),
            outputs={"exit_code": code, "duration_s": round(duration, 3)},
            model=None,
            runner=self.name,
            error=None if code == 0 else f"command exited with status {code}",
        )


def _summary(command: str, code: int, duration: float, output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    head = f"`{one_line(command, 60)}` exited {code} in {duration:.1f}s"
    if not lines:
        return head + " (no output)"
    if len(lines) == 1:
        return f"{head}: {one_line(lines[0], 100)}"
    return f"{head}: {one_line(lines[0], 60)} ... {one_line(lines[-1], 80)}"
