"""The Claude Code runner: one fresh ``claude -p`` process per stage attempt.

For users without an API key: the child runs with the user's own environment and Claude Code
login, as it is. Per attempt it gets (argv, never a shell):

- the stage brief as the prompt (after ``--``, or on stdin when too long for one argument) and
  the agent's system prompt with ``--system-prompt`` (replacing Claude Code's own, so the
  context is what the context builder decided; ``system_prompt_mode="append"`` keeps it);
- the resolved model (``--model``) and ``--fallback-model`` when one is set;
- the agent's tools mapped like the API runner's (``--tools``: Read, Write, Edit, Glob, Grep and
  Bash only when the stage allows command patterns). ``--permission-mode acceptEdits`` lets it
  write inside the working directory only; ``--allowedTools`` pre-approves just the
  ``Bash(<pattern>)`` rules. An unscoped ``Write`` or ``Read`` rule would let it touch any path,
  so file tools are never listed there;
- an empty MCP configuration with ``--strict-mcp-config``, so it can never reach stageflow (or
  any other server) through MCP; ``--max-turns``; ``--max-budget-usd`` with what the caps still
  allow; ``--no-session-persistence``; ``--output-format json``;
- the run's worktree as working directory, in its own process group: a timeout or an anyio
  cancellation kills the whole group.

The result JSON's per-model usage and cost are recorded on the attempt's meter before anything
else is decided, so a failed attempt's spend reaches the ledger too. Parsing lives in
``claude_code_result``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from anyio.abc import ByteReceiveStream, Process

from stageflow.engine.runner import AttemptRequest, AttemptResult, RequestUsage
from stageflow.errors import BudgetExceeded, ModelError, StageTimeout
from stageflow.subagents.claude_code_result import (
    CliResult,
    classify_cli_error,
    parse_cli_output,
    parse_final_answer,
)
from stageflow.subagents.command import _group_alive, _signal_group
from stageflow.subagents.context import StageContext, build_context
from stageflow.subagents.workspace_tools import normalize_tool_names

__all__ = [
    "EMPTY_MCP_CONFIG",
    "ClaudeCall",
    "ClaudeCodeRunner",
    "build_call",
    "claude_tools",
    "permission_rules",
]

log = logging.getLogger(__name__)

EMPTY_MCP_CONFIG = '{"mcpServers":{}}'
DEFAULT_TIMEOUT = 1800.0
DEFAULT_MAX_TURNS = 30
# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN); stay well below it
ARG_LIMIT = 100_000
STDERR_TAIL = 64 * 1024
WRITE_TOOLS = frozenset({"Write", "Edit"})

SystemPromptMode = Literal["replace", "append"]
ContextBuilder = Callable[[AttemptRequest], StageContext]


def default_context(request: AttemptRequest) -> StageContext:
    """The brief asks for a closing ```json block (Claude Code has no ``submit_result``).

    No project-file source: Claude Code reads the worktree's ``CLAUDE.md`` itself.
    """
    return build_context(request, finish="json")


def claude_tools(
    agent_tools: Sequence[str], *, bash_allow: Sequence[str], writable: bool
) -> list[str]:
    """Claude Code tool names for ``--tools``: the agent's, mapped as for the API runner."""
    tools = normalize_tool_names(agent_tools, bash_allowed=bool(bash_allow))
    return [t for t in tools if writable or t not in WRITE_TOOLS]


def permission_rules(tools: Sequence[str], bash_allow: Sequence[str]) -> list[str]:
    """``--allowedTools`` rules: one ``Bash(<pattern>)`` per allowed command pattern."""
    if "Bash" not in tools:
        return []
    return [f"Bash({p.strip()})" for p in dict.fromkeys(bash_allow) if p.strip()]


@dataclass(frozen=True)
class ClaudeCall:
    """One ``claude`` invocation: argv, what goes to stdin, files to write before starting."""

    argv: list[str]
    stdin: bytes | None = None
    files: dict[Path, str] = field(default_factory=dict)


def _fits(text: str, limit: int) -> bool:
    return len(text.encode("utf-8")) <= limit


def _usd(amount: float) -> str:
    return f"{max(amount, 0.000001):.6f}"


def build_call(
    executable: str,
    context: StageContext,
    *,
    model: str | None,
    fallback_model: str | None = None,
    tools: Sequence[str],
    allowed: Sequence[str] = (),
    max_turns: int = DEFAULT_MAX_TURNS,
    max_budget_usd: float | None = None,
    writable: bool = True,
    system_prompt_mode: SystemPromptMode = "replace",
    scratch: Path | None = None,
    arg_limit: int = ARG_LIMIT,
) -> ClaudeCall:
    """The ``claude -p`` invocation for one attempt (see the module docstring).

    A system prompt over ``arg_limit`` bytes goes to a file in ``scratch`` (``ClaudeCall.files``);
    a brief over it goes to stdin. ``--`` ends the options, so a brief starting with ``-``
    stays the prompt.
    """
    argv = [executable, "-p", "--output-format", "json", "--no-session-persistence"]
    if model:
        argv += ["--model", model]
    if fallback_model and fallback_model != model:
        argv += ["--fallback-model", fallback_model]
    flag = "--system-prompt" if system_prompt_mode == "replace" else "--append-system-prompt"
    files: dict[Path, str] = {}
    if _fits(context.system, arg_limit):
        argv += [flag, context.system]
    else:
        if scratch is None:
            raise ValueError("a system prompt this long needs a scratch directory")
        path = scratch / "system-prompt.md"
        files[path] = context.system
        argv += [f"{flag}-file", str(path)]
    # --tools and --allowedTools take several values: each list ends at the next option
    argv += ["--tools", ",".join(tools)]
    if allowed:
        argv += ["--allowedTools", *allowed]
    argv += ["--permission-mode", "acceptEdits" if writable else "default"]
    argv += ["--strict-mcp-config", "--mcp-config", EMPTY_MCP_CONFIG]
    argv += ["--max-turns", str(max_turns)]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", _usd(max_budget_usd)]
    if _fits(context.brief, arg_limit):
        return ClaudeCall([*argv, "--", context.brief], None, files)
    return ClaudeCall(argv, context.brief.encode("utf-8"), files)


class ClaudeCodeRunner:
    """``STAGEFLOW_RUNNER=claude-code``: see the module docstring.

    ``request.model`` is the resolved model id (``RoutedRunner`` resolves aliases); None lets
    Claude Code use its own default. ``env`` replaces the inherited environment (tests); None
    passes ``os.environ`` through unchanged.
    """

    name = "claude-code"

    def __init__(
        self,
        *,
        executable: str = "claude",
        fallback_model: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_turns: int = DEFAULT_MAX_TURNS,
        context_builder: ContextBuilder | None = None,
        env: Mapping[str, str] | None = None,
        system_prompt_mode: SystemPromptMode = "replace",
        kill_grace: float = 2.0,
        drain_grace: float = 1.0,
        arg_limit: int = ARG_LIMIT,
    ) -> None:
        self.executable = executable
        self.fallback_model = fallback_model
        self.timeout = timeout
        self.max_turns = max_turns
        self.context_builder: ContextBuilder = context_builder or default_context
        self.env = dict(env) if env is not None else None
        self.system_prompt_mode: SystemPromptMode = system_prompt_mode
        self.kill_grace = kill_grace  # SIGTERM -> SIGKILL
        self.drain_grace = drain_grace  # after claude exits, how long to read its pipes
        self.arg_limit = arg_limit

    def _where(self, request: AttemptRequest) -> str:
        return f"run {request.run_id} stage '{request.stage.id}' attempt {request.attempt}"

    def _resolve_executable(self) -> str:
        path = self.env.get("PATH") if self.env is not None else None
        found = shutil.which(self.executable, path=path)
        if found is None:
            raise ModelError(
                f"the Claude Code executable '{self.executable}' was not found (PATH or path); "
                "install Claude Code (npm install -g @anthropic-ai/claude-code), set "
                "STAGEFLOW_CLAUDE to its path, or choose another STAGEFLOW_RUNNER",
                retryable=False,
                kind="unavailable",
            )
        return found

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """Run one attempt in a fresh ``claude -p`` process; see the module docstring."""
        meter = request.meter
        remaining = meter.remaining_usd()
        if remaining is not None and remaining <= 0:
            spent = meter.usage.cost_usd
            raise BudgetExceeded(
                f"budget exceeded in stage '{request.stage.id}': Claude Code was not started; "
                f"the caps allow no more spending (this attempt has spent ${spent:.4f})",
                spent_usd=spent,
                budget_usd=spent,
            )
        spent_before = meter.usage.cost_usd
        executable = self._resolve_executable()
        context = self.context_builder(request)
        meter.note_context(context.manifest())
        agent = request.agent
        max_turns = agent.max_turns if agent is not None and agent.max_turns else self.max_turns
        tools = claude_tools(
            agent.tools if agent is not None else [],
            bash_allow=request.bash_allow,
            writable=request.writable,
        )
        with tempfile.TemporaryDirectory(prefix="stageflow-claude-") as scratch:
            call = build_call(
                executable,
                context,
                model=request.model,
                fallback_model=self.fallback_model,
                tools=tools,
                allowed=permission_rules(tools, request.bash_allow),
                max_turns=max_turns,
                max_budget_usd=remaining,
                writable=request.writable,
                system_prompt_mode=self.system_prompt_mode,
                scratch=Path(scratch),
                arg_limit=self.arg_limit,
            )
            for path, text in call.files.items():
                path.write_text(text, encoding="utf-8")
            code, stdout, stderr = await self._execute(call, request)
        parsed = parse_cli_output(stdout)
        if parsed is None:
            raise self._no_result(code, stdout, stderr)
        await self._record(parsed, request)
        cap = None if remaining is None else spent_before + remaining
        return self._outcome(parsed, request, code, stderr, max_turns, cap)

    # -- the process ------------------------------------------------------------------------

    async def _execute(self, call: ClaudeCall, request: AttemptRequest) -> tuple[int, str, str]:
        """Run ``call`` in the workdir; (exit code, stdout, stderr). Kills the group on exit."""
        limit = request.timeout if request.timeout is not None else self.timeout
        request.workdir.mkdir(parents=True, exist_ok=True)
        try:
            process = await anyio.open_process(
                call.argv,
                stdin=subprocess.PIPE if call.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=request.workdir,
                env=self.env if self.env is not None else dict(os.environ),
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise ModelError(
                f"cannot start the Claude Code executable '{call.argv[0]}': {exc}",
                retryable=False,
                kind="unavailable",
            ) from exc
        log.info(
            "%s: started %s (pid %s, model %s)",
            self._where(request),
            call.argv[0],
            process.pid,
            request.model or "default",
        )
        out, err = bytearray(), bytearray()
        try:
            with anyio.move_on_after(limit) as deadline:
                await self._communicate(process, call.stdin, out, err)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_group(process)
        if deadline.cancelled_caught:
            raise StageTimeout(
                f"Claude Code timed out after {limit:g}s in stage '{request.stage.id}' "
                "(process group killed; its spend is not known)"
            )
        code = process.returncode if process.returncode is not None else -1
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    async def _communicate(
        self, process: Process, data: bytes | None, out: bytearray, err: bytearray
    ) -> None:
        """Feed stdin, read both pipes until claude exits and they drain (or the grace ends).

        stdout is kept whole (it is the result); stderr only its last ``STDERR_TAIL`` bytes.
        """

        async def pump(
            stream: ByteReceiveStream | None, sink: bytearray, done: anyio.Event, limit: int
        ) -> None:
            try:
                if stream is not None:
                    async for chunk in stream:
                        sink += chunk
                        if len(sink) > limit:
                            del sink[: len(sink) - limit]
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            done.set()

        async def feed() -> None:
            if process.stdin is None:
                return
            try:
                if data:
                    await process.stdin.send(data)
                await process.stdin.aclose()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # claude exited without reading its prompt: its exit status says why

        events = [anyio.Event(), anyio.Event()]
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, process.stdout, out, events[0], sys.maxsize)
            tg.start_soon(pump, process.stderr, err, events[1], STDERR_TAIL)
            tg.start_soon(feed)
            await process.wait()
            # a tool's background child may hold the pipes open; don't wait for it forever
            with anyio.move_on_after(self.drain_grace):
                for event in events:
                    await event.wait()
            tg.cancel_scope.cancel()

    async def _stop_group(self, process: Process) -> None:
        """SIGTERM claude's process group, wait a grace period, SIGKILL what is left, reap."""
        pgid = process.pid  # start_new_session: claude leads its own group
        if _signal_group(pgid, signal.SIGTERM):
            with anyio.move_on_after(self.kill_grace):
                while _group_alive(pgid):  # noqa: ASYNC110 (no event for "group is empty")
                    await anyio.sleep(0.02)
            _signal_group(pgid, signal.SIGKILL)
        if process.returncode is None:
            with anyio.move_on_after(self.kill_grace):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        await process.aclose()

    # -- the result -------------------------------------------------------------------------

    async def _record(self, parsed: CliResult, request: AttemptRequest) -> None:
        """One ledger entry per model the session used, priced by the CLI's own ``costUSD``."""
        for use in parsed.models:
            await request.meter.record(
                RequestUsage(
                    model=use.model,
                    model_requested=request.model or use.model,
                    input_tokens=use.input_tokens,
                    output_tokens=use.output_tokens,
                    cache_write_5m_tokens=use.cache_write_5m_tokens,
                    cache_write_1h_tokens=use.cache_write_1h_tokens,
                    cache_read_tokens=use.cache_read_tokens,
                    cost_usd=use.cost_usd,
                    request_id=parsed.session_id,  # the CLI session: one entry per model in it
                )
            )

    def _no_result(self, code: int, stdout: str, stderr: str) -> ModelError:
        said = _tail(stderr or stdout)
        if code == 0:
            return ModelError(
                f"Claude Code exited 0 without a JSON result: {said or '(no output)'}",
                retryable=False,
                kind="protocol",
            )
        kind, retryable = classify_cli_error(None, said)
        return ModelError(
            f"Claude Code exited with status {code}: {said or '(no output)'}",
            retryable=retryable,
            kind=kind,
        )

    def _outcome(
        self,
        parsed: CliResult,
        request: AttemptRequest,
        code: int,
        stderr: str,
        max_turns: int,
        cap: float | None,
    ) -> AttemptResult:
        model = parsed.answered_model or request.model
        if parsed.subtype == "error_max_turns":
            error = (
                f"Claude Code reached the turn limit ({max_turns} turns, --max-turns) "
                "before a final answer"
            )
            return self._failed(request, model, error)
        if parsed.subtype == "error_max_budget_usd":
            spent = request.meter.usage.cost_usd
            raise BudgetExceeded(
                f"budget exceeded in stage '{request.stage.id}': Claude Code stopped at its "
                f"--max-budget-usd limit; this attempt has spent ${spent:.4f}",
                spent_usd=spent,
                budget_usd=round(cap if cap is not None else spent, 10),
            )
        if parsed.is_error or code != 0:
            said = parsed.error_text or _tail(stderr) or f"exit status {code}"
            kind, retryable = classify_cli_error(parsed.api_error_status, said)
            hint = (
                " (log in with `claude` /login, or set ANTHROPIC_API_KEY)" if kind == "auth" else ""
            )
            raise ModelError(
                f"Claude Code failed ({parsed.subtype or 'error'}, exit {code}): {said}{hint}",
                retryable=retryable,
                status_code=parsed.api_error_status,
                kind=kind,
            )
        answer = parse_final_answer(parsed.result, request.stage.produces)
        if answer.error:
            log.info("%s: attempt failed: %s", self._where(request), answer.error)
        return AttemptResult(
            status=answer.status,
            summary=answer.summary,
            artifacts=answer.artifacts,
            outputs=answer.outputs,
            usage=request.meter.usage,
            model=model,
            model_requested=request.model,
            runner=self.name,
            error=answer.error,
        )

    def _failed(self, request: AttemptRequest, model: str | None, error: str) -> AttemptResult:
        log.info("%s: attempt failed: %s", self._where(request), error)
        return AttemptResult(
            status="failed",
            summary=error,
            usage=request.meter.usage,
            model=model,
            model_requested=request.model,
            runner=self.name,
            error=error,
        )


def _tail(text: str, limit: int = 600) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "..." + flat[-limit:]
