"""The API runner: each stage attempt is a fresh tool-use conversation with the Messages API.

Composition only: the model route (``routing``), the context (``context``), the workspace and
its tools (``workspace``, ``workspace_tools``, ``shell``), the sandbox of its Bash commands
(``sandbox``), prices (``pricing``) and the loop (``tool_loop``). The SDK is reached through
``anthropic_client``, imported on first use so that importing stageflow (and starting the MCP
server) never pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio.to_thread

from stageflow.config import Settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.models.client import ModelClient
from stageflow.models.pricing import PriceTable, load_price_table
from stageflow.models.routing import ModelChoice, ModelRoutes, load_routes
from stageflow.subagents.context import (
    ContextSource,
    ProjectFileSource,
    build_context,
    collect_sections,
)
from stageflow.subagents.options import RunnerOptions, load_runner_options, sandbox_for
from stageflow.subagents.tool_loop import ExtraTool, LoopLimits, run_tool_loop
from stageflow.workspace.root import Workspace
from stageflow.workspace.shell import BashPolicy
from stageflow.workspace.tools import normalize_tool_names

log = logging.getLogger(__name__)

ClientFactory = Callable[[], ModelClient]


def _default_client() -> ModelClient:
    from stageflow.models.anthropic import AnthropicClient

    return AnthropicClient()  # ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL from the environment


def choose_model(routes: ModelRoutes, request: AttemptRequest) -> ModelChoice:
    """Stage ``model`` > agent ``model`` > config default; the agent may name a fallback."""
    agent = request.agent
    fallback = agent.extra.get("fallback_model") if agent is not None else None
    return routes.choose(
        stage_model=request.stage.model,
        agent_model=agent.model if agent is not None else None,
        agent_fallback=fallback if isinstance(fallback, str) else None,
    )


def bash_policy(options: RunnerOptions, request: AttemptRequest) -> BashPolicy:
    """The template's and the config's allowed command patterns, merged."""
    patterns = tuple(dict.fromkeys([*request.bash_allow, *options.bash]))
    return BashPolicy(allow=patterns, timeout=options.bash_timeout)


def context_budget(options: RunnerOptions, request: AttemptRequest) -> int:
    """Project-context tokens for this attempt: the agent's ``context_tokens``, else config."""
    agent = request.agent
    value = agent.extra.get("context_tokens") if agent is not None else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return options.context_tokens


class AnthropicRunner:
    """``STAGEFLOW_RUNNER=anthropic``: see the module docstring."""

    name = "anthropic"

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: ClientFactory = _default_client,
        sources: Sequence[ContextSource] | None = None,
        extra_tools: Sequence[ExtraTool] = (),
    ) -> None:
        self.settings = settings
        self.routes: ModelRoutes = load_routes(settings)
        self.prices: PriceTable = load_price_table(settings)
        self.options = load_runner_options(settings)
        self.sources = (
            list(sources) if sources is not None else [ProjectFileSource(settings.project)]
        )
        self.extra_tools = list(extra_tools)
        self._client_factory = client_factory
        self._client: ModelClient | None = None

    def client(self) -> ModelClient:
        """One client per runner: attempts share its connection pool."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client, if one was made."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """One attempt: route the model, build the context, run the loop."""
        choice = choose_model(self.routes, request)
        policy = bash_policy(self.options, request)
        request = request.model_copy(update={"bash_allow": list(policy.allow)})
        sandbox = sandbox_for(self.settings, self.options, network=request.stage.network)
        if policy.enabled and request.writable:  # Bash is offered: say how it is confined
            where = f"run {request.run_id} stage '{request.stage.id}'"
            await anyio.to_thread.run_sync(sandbox.require, where)
        workspace = Workspace(
            request.workdir,
            writable=request.writable,
            read_only_reason=request.read_only_reason,
            bash=policy,
            sandbox=sandbox,
        )
        agent_tools = request.agent.tools if request.agent is not None else []
        tools = normalize_tool_names(agent_tools, bash_allowed=policy.enabled)
        budget = context_budget(self.options, request)
        context = build_context(
            request,
            finish="tool",
            sections=await collect_sections(self.sources, request, budget),
            budget_tokens=budget,
        )
        max_turns = self.options.max_turns
        if request.agent is not None and request.agent.max_turns:
            max_turns = request.agent.max_turns
        log.info(
            "run %s stage %s attempt %d: %s (asked %s), tools %s",
            request.run_id,
            request.stage.id,
            request.attempt,
            choice.model,
            choice.asked,
            ",".join(tools),
        )
        return await run_tool_loop(
            self.client(),
            request=request,
            context=context,
            workspace=workspace,
            tool_names=tools,
            prices=self.prices,
            model=choice.model,
            fallback_model=choice.fallback,
            limits=LoopLimits(max_turns=max_turns, max_tokens=self.options.max_tokens),
            extra_tools=self.extra_tools,
            runner_name=self.name,
        )
