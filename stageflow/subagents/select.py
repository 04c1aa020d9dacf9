"""Choosing the runner for each stage.

Command stages (``run:``) always go to the ``CommandRunner``. Agent stages go to the runner
named by ``STAGEFLOW_RUNNER`` / config (``Settings.runner``):

- ``offline``: the scripted ``OfflineRunner``;
- ``anthropic``: ``AnthropicRunner`` (the Messages API, ``ANTHROPIC_API_KEY``);
- ``claude-code``: ``ClaudeCodeRunner`` (a fresh ``claude -p`` per attempt; the user's login);
- ``auto``: ``anthropic`` if ``ANTHROPIC_API_KEY`` is set, else ``claude-code`` if ``claude`` is
  on PATH, else a clear non-retryable ``ModelError`` at the first agent stage. ``auto`` never
  falls back to ``offline`` silently.

Every stage of a run (agent and command stages alike, with any runner) works in the run's
workspace: a git worktree of the project on branch ``stageflow/<run>`` (see ``worktree``), or
the project itself with ``workspace: in_place``. Before an agent stage starts there the
workspace is marked (``tainted``); command stages after that run in the OS sandbox
(``sandbox``), or fail saying how to install it, unless ``sandbox = "none"``. Nothing here
fails at import or construction for a missing model runner, so the server starts and
everything else works; the error comes when an agent stage actually needs a model.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio.to_thread

from stageflow.config import Settings
from stageflow.engine.runner import AttemptRequest, AttemptResult, Runner
from stageflow.errors import ModelError
from stageflow.workspace.lanes import WorktreeLanes
from stageflow.workspace.tainted import is_tainted, mark_tainted

TEST_COMMAND_ENV = "STAGEFLOW_TEST_COMMAND"  # ``[workspace] test_command`` in command stages

if TYPE_CHECKING:
    from stageflow.subagents.command import CommandRunner
    from stageflow.subagents.context import ContextSource
    from stageflow.subagents.debate.runner import DebateRunner
    from stageflow.subagents.offline.runner import OfflineRunner
    from stageflow.subagents.tool_loop import ExtraTool
    from stageflow.workspace.sandbox import Sandbox
    from stageflow.workspace.worktree import WorkspaceMode

__all__ = [
    "NO_RUNNER_MESSAGE",
    "RunnerExtras",
    "StageRunner",
    "describe_runner",
    "make_runner",
    "resolve_runner_name",
]

log = logging.getLogger(__name__)

AgentRunnerName = Literal["anthropic", "claude-code", "offline"]

NO_RUNNER_MESSAGE = (
    "no model runner available: set ANTHROPIC_API_KEY, install Claude Code (`claude` on PATH), "
    "or set STAGEFLOW_RUNNER=offline"
)


@dataclass(frozen=True)
class RunnerExtras:
    """What model runners give every attempt beyond the project's own files: more context
    sources and, for the API runner, more tools (the knowledge base provides both; see
    ``stageflow.knowledge.extras``). Claude Code children have no MCP servers, so no tools."""

    sources: Sequence[ContextSource] = ()
    tools: Sequence[ExtraTool] = ()


ExtrasFactory = Callable[[], RunnerExtras]


def _anthropic(settings: Settings, extras: RunnerExtras | None) -> Runner:
    """The API runner; with extras, every attempt also gets their context and tools."""
    from stageflow.subagents.anthropic_runner import AnthropicRunner
    from stageflow.subagents.context import ProjectFileSource

    if extras is None:
        return AnthropicRunner(settings)
    return AnthropicRunner(
        settings,
        sources=[ProjectFileSource(settings.project), *extras.sources],
        extra_tools=list(extras.tools),
    )


def _claude_code(settings: Settings, extras: RunnerExtras | None) -> Runner:
    """One ``claude -p`` per attempt; the brief carries the project's instructions and the
    extras' context (the child has no MCP servers, so no extra tools)."""
    from stageflow.models.pricing import load_price_table
    from stageflow.subagents.claude_code.routed import RoutedRunner
    from stageflow.subagents.claude_code.runner import ClaudeCodeRunner
    from stageflow.subagents.context import ProjectFileSource
    from stageflow.subagents.options import load_runner_options, sandbox_for

    executable = os.environ.get("STAGEFLOW_CLAUDE") or "claude"
    prices = load_price_table(settings)
    options = load_runner_options(settings)
    context_tokens = options.context_tokens
    sandbox = sandbox_for(settings, options, network=True)  # the child must reach the API
    sources: list[ContextSource] = [ProjectFileSource(settings.project)]
    if extras is not None:
        sources.extend(extras.sources)

    def make(fallback: str | None, max_turns: int) -> Runner:
        return ClaudeCodeRunner(
            executable=executable,
            fallback_model=fallback,
            max_turns=max_turns,
            sources=sources,
            context_tokens=context_tokens,
            prices=prices,
            sandbox=sandbox,
        )

    return RoutedRunner(settings, make, name="claude-code")


# Each factory imports its runner (and so its SDK) on first use, so that importing stageflow
# stays fast: the stdio server must answer ``initialize`` quickly.
MODEL_RUNNERS: dict[str, Callable[[Settings, RunnerExtras | None], Runner]] = {
    "anthropic": _anthropic,
    "claude-code": _claude_code,
}


def resolve_runner_name(settings: Settings) -> AgentRunnerName | None:
    """The agent runner ``settings.runner`` stands for; None when ``auto`` finds nothing."""
    if settings.runner != "auto":
        return settings.runner
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic"
    if shutil.which("claude"):
        return "claude-code"
    return None


def _unavailable_message(name: str, settings: Settings) -> str:
    why = ""
    if settings.runner == "auto":
        why = " (chosen by STAGEFLOW_RUNNER=auto because " + (
            "ANTHROPIC_API_KEY is set)" if name == "anthropic" else "`claude` is on PATH)"
        )
    return (
        f"the '{name}' runner{why} is not available in this version of stageflow; "
        "set STAGEFLOW_RUNNER=offline to run agent stages with the scripted offline runner"
    )


class StageRunner:
    """A ``Runner`` that sends command stages to the command runner, agent stages to the model.

    ``name`` is the agent runner in use (``offline``, ``anthropic``, ``claude-code``), or
    ``auto`` when none was found.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        offline: OfflineRunner | None = None,
        extras: ExtrasFactory | None = None,
    ) -> None:
        self.settings = settings
        self._command: CommandRunner | None = None  # built at the first command stage
        self.extras = extras
        self.agent_runner_name = resolve_runner_name(settings)
        self.name: str = self.agent_runner_name or settings.runner
        self._agent: Runner | None = offline if self.agent_runner_name == "offline" else None
        self._offline = offline
        self._debate: DebateRunner | None = None  # built at the first debate stage
        # with a model runner, stages that write in parallel get worktrees of their own
        self.lanes = WorktreeLanes(
            settings.project,
            enabled=self.agent_runner_name in MODEL_RUNNERS,
            mode=self._workspace_mode,
        )

    def _workspace_mode(self) -> WorkspaceMode:
        from stageflow.subagents.options import load_runner_options

        return load_runner_options(self.settings).workspace_mode

    def agent_runner(self) -> Runner:
        """The runner for agent stages, built on first use; raises ``ModelError`` if none."""
        if self._agent is not None:
            return self._agent
        name = self.agent_runner_name
        if name is None:
            raise ModelError(NO_RUNNER_MESSAGE, retryable=False, kind="unavailable")
        factory = MODEL_RUNNERS.get(name)
        if factory is None:
            raise ModelError(
                _unavailable_message(name, self.settings), retryable=False, kind="unavailable"
            )
        self._agent = factory(self.settings, self.extras() if self.extras else None)
        log.info("agent runner: %s", name)
        return self._agent

    async def aclose(self) -> None:
        """Close the agent runner's model client (its HTTP connections), if one was made.

        Call it before the event loop ends: a client left open is closed by the garbage
        collector on a loop that no longer runs (``ResourceWarning: unclosed transport``).
        """
        close = getattr(self._agent, "aclose", None)
        if close is not None:
            await close()
        if self._debate is not None:
            await self._debate.aclose()

    def debate_runner(self, request: AttemptRequest) -> DebateRunner:
        """The runner of debate stages (offline: scripted, with the stage's scripted delay)."""
        from stageflow.subagents.debate.build import make_debate_runner

        if self.agent_runner_name == "offline":
            delay = 0.0
            if self._offline is not None:
                script = self._offline.script.get(request.stage.id)
                delay = self._offline.delay
                if script is not None and script.delay is not None:
                    delay = script.delay
            return make_debate_runner(self.settings, "offline", offline_delay=delay)
        if self._debate is None:
            self._debate = make_debate_runner(self.settings, self.agent_runner_name)
        return self._debate

    @property
    def command(self) -> CommandRunner:
        """The command runner (imported on first use: off the server's start-up path)."""
        if self._command is None:
            from stageflow.subagents.command import CommandRunner
            from stageflow.subagents.options import project_test_command

            test = project_test_command(self.settings)
            self._command = CommandRunner(
                default_timeout=self.settings.command_timeout,
                env={TEST_COMMAND_ENV: test} if test else None,
            )
        return self._command

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """Dispatch one attempt by stage kind, in its lane of the run's workspace (a join
        first runs its ``verify`` command; a merge stage must leave no conflict marker)."""
        # every stage of a run works in the run's workspace (its git worktree), whatever the
        # runner: a command stage of an offline run must not write into the user's tree
        if request.stage.run:
            request = await self._in_workspace(request)
            failed = await self._verify(request)
            if failed is not None:
                return failed
            sandbox = await self._command_sandbox(request)
            return await self.command.run(request, sandbox=sandbox)

        if request.stage.debate is not None:  # no workspace: debaters read, never write
            return await self.debate_runner(request).run(request)

        runner = self.agent_runner()
        request = await self._in_workspace(request)
        failed = await self._verify(request)
        if failed is not None:
            return failed
        if self.agent_runner_name == "offline":  # scripted text, no model-written files
            return await runner.run(request)
        if request.writable:  # from now on the workspace may hold model-written files
            await anyio.to_thread.run_sync(mark_tainted, self.settings.project, request.run_id)
        result = await runner.run(request)
        from stageflow.subagents.joining import check_resolution

        return await check_resolution(request, result, self.settings.project)

    async def _verify(self, request: AttemptRequest) -> AttemptResult | None:
        from stageflow.subagents.joining import verify_join

        mode = request.workspace_mode or self._workspace_mode()
        return await verify_join(
            request, self.settings.project, mode, self.command, self._command_sandbox
        )

    async def _command_sandbox(self, request: AttemptRequest) -> Sandbox | None:
        """The sandbox a command stage runs in: None before any agent stage of the run started
        in its workspace (the template's command on the user's files) or with
        ``sandbox = "none"``; ``SandboxError`` when it is needed and cannot be used."""
        from stageflow.subagents.options import load_runner_options, sandbox_for

        if not await anyio.to_thread.run_sync(is_tainted, self.settings.project, request.run_id):
            return None
        options = load_runner_options(self.settings)
        sandbox = sandbox_for(self.settings, options, network=request.stage.network)
        what = f"run {request.run_id} command stage '{request.stage.id}'"
        refusal = await anyio.to_thread.run_sync(sandbox.unconfined_refusal, what)
        if refusal is not None:
            raise refusal
        await anyio.to_thread.run_sync(sandbox.require, what)
        return sandbox if sandbox.confines else None

    async def _in_workspace(self, request: AttemptRequest) -> AttemptRequest:
        """``request`` pointed at its lane of the run's workspace (the run's worktree is made
        on its first stage, a stage's own on its first attempt)."""
        from stageflow.workspace.worktree import prepare_lane

        mode = request.workspace_mode or self._workspace_mode()
        ws = await anyio.to_thread.run_sync(
            prepare_lane, self.settings.project, request.run_id, request.lane, mode
        )
        return request.model_copy(
            update={
                "workdir": ws.root,
                "writable": ws.mode != "read_only",
                "read_only_reason": ws.reason,
            }
        )


def make_runner(
    settings: Settings,
    *,
    offline_delay: float = 0.0,
    extras: ExtrasFactory | None = None,
) -> StageRunner:
    """The runner the engine uses for a project.

    The offline runner reads ``STAGEFLOW_OFFLINE_SCRIPT`` here, so a broken script file is
    reported at start-up (``SpecError`` naming the file) rather than at the first stage.
    ``extras`` is called when the first model runner is built (so nothing it imports slows
    start-up); its sources and tools go to every agent attempt.
    """
    offline = None
    if resolve_runner_name(settings) == "offline":
        from stageflow.subagents.offline.runner import OfflineRunner

        offline = OfflineRunner.from_env(delay=offline_delay)
    return StageRunner(settings, offline=offline, extras=extras)


def describe_runner(settings: Settings) -> str:
    """A short label for the CLI and status output, e.g. ``offline (scripted, no model calls)``."""
    name = resolve_runner_name(settings)
    if name == "offline":
        return "offline (scripted, no model calls)"
    if name is None:
        return "auto (no runner available)"
    label = name if settings.runner != "auto" else f"auto -> {name}"
    if name not in MODEL_RUNNERS:
        return f"{label} (not available in this version)"
    return label
