"""The Claude Code runner: one fresh ``claude -p`` process per stage attempt.

For users without an API key: the child runs with the user's own environment (less stageflow's
``STAGEFLOW_*`` variables) and Claude Code login. Per attempt it gets (argv, never a shell):

- the stage brief as the prompt (after ``--``, or on stdin when too long for one argument) and
  the agent's system prompt with ``--system-prompt`` (replacing Claude Code's own, so the
  context is what the context builder decided; ``system_prompt_mode="append"`` keeps it). The
  brief carries the project's ``CLAUDE.md``/``AGENTS.md`` (``ProjectFileSource``; by default
  the worktree's), since Claude Code no longer reads them itself (next point);
- ``--setting-sources ""``: none of the user's, project's or local settings files. A stage
  runs with its own permissions only: the user's ``permissions.allow`` rules do not widen its
  Bash patterns, and no hook from ``~/.claude`` or the worktree's ``.claude/`` runs (the
  worktree is the model's workspace). The login itself is not a setting and still works; an
  ``apiKeyHelper`` or ``env`` in the user's settings does not apply. Admin-managed policy
  settings still do;
- the resolved model (``--model``) and ``--fallback-model`` when one is set;
- the agent's tools mapped like the API runner's (``--tools``: Read, Write, Edit, Glob, Grep,
  and Bash only when the stage allows command patterns and the workspace is writable: a
  command can write anywhere, so read-only means no commands). ``--permission-mode
  acceptEdits`` lets it write inside the working directory only; ``--allowedTools``
  pre-approves just the ``Bash(<pattern>)`` rules. An unscoped ``Write`` or ``Read`` rule would
  let it touch any path, so file tools are never listed there;
- an empty MCP configuration with ``--strict-mcp-config``, so it can never reach stageflow (or
  any other server) through MCP; ``--max-turns``; ``--no-session-persistence``;
- ``--max-budget-usd`` with this attempt's share of what the caps allow
  (``AttemptMeter.share_usd``), reserved on the meter before the child starts
  (``AttemptMeter.reserve``): parallel Claude Code stages split the run's budget instead of
  each being handed all of it;
- ``--output-format stream-json --verbose --include-partial-messages``: each model request's
  usage is recorded on the attempt's meter as soon as the request ends (``claude_code_stream``),
  so a timeout or a cancel keeps the spend of the requests already made;
- the run's worktree as working directory, in its own process group: a timeout or an anyio
  cancellation kills the whole group;
- with a ``sandbox``, the whole child runs in bubblewrap (network on, for the API) and gets
  only the Bash patterns the sandbox allows (``claude_code.confine`` says what differs from
  the Bash tool's profile and what risk remains).

At the end the result object (``claude_code_result``) gives the final text, and its per-model
usage and cost top the ledger up where the CLI counted more than the stream showed
(``claude_code_stream.unseen_usage``), before anything else is decided, so a failed attempt's
spend reaches the ledger too.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import anyio
from anyio.abc import Process

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import BudgetExceeded, ModelError, StageTimeout
from stageflow.models.pricing import PriceTable
from stageflow.subagents.claude_code.call import (
    ARG_LIMIT,
    DEFAULT_MAX_TURNS,
    EMPTY_MCP_CONFIG,
    ClaudeCall,
    SystemPromptMode,
    build_call,
    claude_tools,
    permission_rules,
)
from stageflow.subagents.claude_code.confine import child_env, confine_child, patterns_for
from stageflow.subagents.claude_code.result import (
    CliResult,
    classify_cli_error,
    parse_final_answer,
)
from stageflow.subagents.claude_code.stream import LineSplitter, StreamLedger
from stageflow.subagents.context import (
    DEFAULT_CONTEXT_TOKENS,
    ContextSource,
    ProjectFileSource,
    StageContext,
    build_context,
    collect_sections,
)
from stageflow.subagents.submit import plan_checker
from stageflow.workspace.procgroup import stop_group
from stageflow.workspace.sandbox import Sandbox

__all__ = [
    "EMPTY_MCP_CONFIG",
    "ClaudeCall",
    "ClaudeCodeRunner",
    "build_call",
    "claude_tools",
    "permission_rules",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1800.0
STDERR_TAIL = 64 * 1024
PLAN_CORRECTIONS = 2  # more processes a plan stage's attempt may use to correct its plan
MAX_PREVIOUS = 20_000  # characters of the refused answer quoted back


def corrected_context(context: StageContext, problems: Sequence[str], answer: str) -> StageContext:
    """The brief again, plus what was wrong with the last answer's plan and that answer, so
    the next process corrects the plan instead of starting over."""
    quoted = answer if len(answer) <= MAX_PREVIOUS else "[...]\n" + answer[-MAX_PREVIOUS:]
    note = (
        "\n\n## Your previous answer was refused\n"
        + "\n".join(f"- {p}" for p in problems)
        + "\n\nYour previous final answer (work already done in the workspace stays):\n"
        + quoted
        + "\n\nFix the plan and end your answer with the corrected ```json block."
    )
    return replace(context, brief=context.brief + note)


ContextBuilder = Callable[[AttemptRequest], StageContext]


class ClaudeCodeRunner:
    """``STAGEFLOW_RUNNER=claude-code``: see the module docstring.

    ``request.model`` is the resolved model id (``RoutedRunner`` resolves aliases); None lets
    Claude Code use its own default. ``env`` replaces the inherited environment (tests); None
    passes ``os.environ`` through unchanged. ``sources`` offer project context for the brief
    (default: the worktree's ``CLAUDE.md`` and friends); ``context_builder`` replaces the whole
    context building (tests). ``prices`` price each request as the stream shows it.
    ``sandbox`` confines the child (None: it runs as it is; the stage runner always passes the
    configured one).
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
        sources: Sequence[ContextSource] | None = None,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        prices: PriceTable | None = None,
        env: Mapping[str, str] | None = None,
        system_prompt_mode: SystemPromptMode = "replace",
        kill_grace: float = 2.0,
        drain_grace: float = 1.0,
        arg_limit: int = ARG_LIMIT,
        plan_corrections: int = PLAN_CORRECTIONS,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.executable = executable
        self.sandbox = sandbox
        self.fallback_model = fallback_model
        self.timeout = timeout
        self.max_turns = max_turns
        self.context_builder = context_builder
        self.sources = list(sources) if sources is not None else None
        self.context_tokens = context_tokens
        self.prices = prices if prices is not None else PriceTable()
        self.env = dict(env) if env is not None else None
        self.system_prompt_mode: SystemPromptMode = system_prompt_mode
        self.kill_grace = kill_grace  # SIGTERM -> SIGKILL
        self.drain_grace = drain_grace  # after claude exits, how long to read its pipes
        self.arg_limit = arg_limit
        self.plan_corrections = plan_corrections

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

    async def _context(self, request: AttemptRequest) -> StageContext:
        """The brief asks for a closing ```json block (Claude Code has no ``submit_result``)."""
        if self.context_builder is not None:
            return self.context_builder(request)
        sources = self.sources
        if sources is None:
            sources = [ProjectFileSource(request.workdir)]
        sections = await collect_sections(sources, request, self.context_tokens)
        return build_context(
            request, finish="json", sections=sections, budget_tokens=self.context_tokens
        )

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """Run one attempt in a fresh ``claude -p`` process; see the module docstring.

        A plan stage whose final answer carries a refused plan gets up to ``plan_corrections``
        more processes within the attempt (its timeout and budget), each told what was wrong.
        """
        context = await self._context(request)
        corrections = 0
        while True:
            result, problems, answer = await self._once(request, context)
            if not problems or corrections >= self.plan_corrections:
                return result
            corrections += 1
            log.info(
                "%s: plan refused (%s); asking for a corrected one (%d of %d)",
                self._where(request),
                "; ".join(problems),
                corrections,
                self.plan_corrections,
            )
            context = corrected_context(context, problems, answer)

    async def _once(
        self, request: AttemptRequest, context: StageContext
    ) -> tuple[AttemptResult, tuple[str, ...], str]:
        """One ``claude -p`` process: the result, a refused plan's problems, the final text."""
        meter = request.meter
        spent_before = meter.usage.cost_usd
        executable = self._resolve_executable()
        agent = request.agent
        max_turns = agent.max_turns if agent is not None and agent.max_turns else self.max_turns
        bash_allow = list(request.bash_allow)
        if self.sandbox is not None and bash_allow and request.writable:
            where = self._where(request)
            await anyio.to_thread.run_sync(self.sandbox.require, where)
            bash_allow = await anyio.to_thread.run_sync(
                patterns_for, self.sandbox, bash_allow, where
            )
        tools = claude_tools(
            agent.tools if agent is not None else [],
            bash_allow=bash_allow,
            writable=request.writable,
        )
        if request.bash_allow and not request.writable:
            log.info(
                "%s: no Bash: the workspace is read-only (%s)",
                self._where(request),
                request.read_only_reason or "not writable",
            )
        # no await from the share to the reservation: attempts starting together split the caps
        share = meter.share_usd()
        if share is not None and share <= 0:
            raise BudgetExceeded(
                f"budget exceeded in stage '{request.stage.id}': Claude Code was not started; "
                f"the caps allow no more spending (this attempt has spent ${spent_before:.4f})",
                spent_usd=spent_before,
                budget_usd=spent_before,
            )
        if share is not None:
            # Claude Code enforces it; the run's other attempts see less (a correction's
            # process adds its share to what the attempt has spent already)
            meter.reserve(spent_before + share)
        meter.note_context(context.manifest())
        ledger = StreamLedger(meter, self.prices, request.model)
        with tempfile.TemporaryDirectory(prefix="stageflow-claude-") as scratch:
            call = build_call(
                executable,
                context,
                model=request.model,
                fallback_model=self.fallback_model,
                tools=tools,
                allowed=permission_rules(tools, bash_allow),
                max_turns=max_turns,
                max_budget_usd=share,
                writable=request.writable,
                system_prompt_mode=self.system_prompt_mode,
                scratch=Path(scratch),
                arg_limit=self.arg_limit,
            )
            for path, text in call.files.items():
                path.write_text(text, encoding="utf-8")
            code, stderr = await self._execute(call, request, ledger)
        parsed = ledger.result
        if parsed is None:
            raise self._no_result(code, ledger.reader.text, stderr)
        await ledger.top_up(parsed)
        cap = None if share is None else spent_before + share
        model = parsed.answered_model or ledger.answered_model or request.model
        result, problems = self._outcome(parsed, request, code, stderr, max_turns, cap, model)
        return result, problems, parsed.result

    # -- the process ------------------------------------------------------------------------

    async def _execute(
        self, call: ClaudeCall, request: AttemptRequest, ledger: StreamLedger
    ) -> tuple[int, str]:
        """Run ``call`` in the workdir, stdout into ``ledger``; (exit code, stderr's tail).

        Kills the group on the way out (timeout, cancel, error), then records the requests the
        kill cut short.
        """
        limit = request.timeout if request.timeout is not None else self.timeout
        request.workdir.mkdir(parents=True, exist_ok=True)
        argv = call.argv
        env = child_env(self.env if self.env is not None else os.environ)
        if self.sandbox is not None and self.sandbox.confines:
            argv, env = confine_child(
                self.sandbox, argv, workdir=request.workdir, env=env, files=list(call.files)
            )
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.PIPE if call.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=request.workdir,
                env=env,
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
        err = bytearray()
        try:
            with anyio.move_on_after(limit) as deadline:
                await self._communicate(process, call.stdin, ledger, err)
        finally:
            with anyio.CancelScope(shield=True):
                await stop_group(process, grace=self.kill_grace)
                await ledger.close()
        if deadline.cancelled_caught:
            raise StageTimeout(
                f"Claude Code timed out after {limit:g}s in stage '{request.stage.id}' "
                "(process group killed; the requests it had made so far are recorded)"
            )
        code = process.returncode if process.returncode is not None else -1
        return code, err.decode("utf-8", "replace")

    async def _communicate(
        self, process: Process, data: bytes | None, ledger: StreamLedger, err: bytearray
    ) -> None:
        """Feed stdin, read both pipes until claude exits and they drain (or the grace ends).

        stdout goes line by line into ``ledger``; of stderr only the last ``STDERR_TAIL`` bytes
        are kept.
        """

        async def read_stdout(done: anyio.Event) -> None:
            lines = LineSplitter()
            try:
                if process.stdout is not None:
                    async for chunk in process.stdout:
                        for line in lines.feed(chunk):
                            await ledger.feed(line)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            for line in lines.close():
                await ledger.feed(line)
            done.set()

        async def read_stderr(done: anyio.Event) -> None:
            try:
                if process.stderr is not None:
                    async for chunk in process.stderr:
                        err.extend(chunk)
                        if len(err) > STDERR_TAIL:
                            del err[: len(err) - STDERR_TAIL]
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
            tg.start_soon(read_stdout, events[0])
            tg.start_soon(read_stderr, events[1])
            tg.start_soon(feed)
            await process.wait()
            # a tool's background child may hold the pipes open; don't wait for it forever
            with anyio.move_on_after(self.drain_grace):
                for event in events:
                    await event.wait()
            tg.cancel_scope.cancel()

    # -- the result -------------------------------------------------------------------------

    def _no_result(self, code: int, stdout_text: str, stderr: str) -> ModelError:
        said = _tail(stderr or stdout_text)
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
        model: str | None,
    ) -> tuple[AttemptResult, tuple[str, ...]]:
        if parsed.subtype == "error_max_turns":
            error = (
                f"Claude Code reached the turn limit ({max_turns} turns, --max-turns) "
                "before a final answer"
            )
            return self._failed(request, model, error), ()
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
        answer = parse_final_answer(
            parsed.result, request.stage.required_artifacts, plan_checker(request)
        )
        if answer.error:
            log.info("%s: attempt failed: %s", self._where(request), answer.error)
        result = AttemptResult(
            status=answer.status,
            summary=answer.summary,
            artifacts=answer.artifacts,
            outputs=answer.outputs,
            usage=request.meter.usage,
            model=model,
            model_requested=request.model,
            runner=self.name,
            error=answer.error,
            plan=answer.plan,
        )
        return result, answer.plan_problems

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
