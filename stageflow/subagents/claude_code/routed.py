"""Model routing and config in front of the Claude Code runner.

``ClaudeCodeRunner`` passes ``request.model`` to ``claude --model``. This wrapper resolves it
first through the same alias table and precedence as the API runner (stage > agent > config
default), so both runners ask for the same model ids and the ledger prices them alike; it hands
the attempt's fallback model, the config's turn bound and the config's Bash patterns on too.
"""

from __future__ import annotations

from collections.abc import Callable

from stageflow.config import Settings
from stageflow.engine.runner import AttemptRequest, AttemptResult, Runner
from stageflow.models.routing import ModelRoutes, load_routes
from stageflow.subagents.anthropic_runner import bash_policy, choose_model
from stageflow.subagents.options import RunnerOptions, load_runner_options

# (fallback model id or None, max turns) -> a runner for one attempt
RunnerFactory = Callable[[str | None, int], Runner]


class RoutedRunner:
    """Resolves the attempt's model, fallback and Bash patterns, then runs ``make(...)``."""

    def __init__(self, settings: Settings, make: RunnerFactory, *, name: str) -> None:
        self.make = make
        self.name = name
        self.routes: ModelRoutes = load_routes(settings)
        self.options: RunnerOptions = load_runner_options(settings)

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """Route, then run a runner built for this attempt (construction is cheap)."""
        choice = choose_model(self.routes, request)
        policy = bash_policy(self.options, request)
        routed = request.model_copy(
            update={"model": choice.model, "bash_allow": list(policy.allow)}
        )
        result = await self.make(choice.fallback, self.options.max_turns).run(routed)
        if result.model_requested is None:
            result = result.model_copy(update={"model_requested": choice.model})
        return result
