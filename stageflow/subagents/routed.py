"""Model routing in front of a runner that takes ``request.model`` as the model to use.

The Claude Code runner passes ``request.model`` to ``claude --model``; this wrapper resolves
it first through the same alias table and precedence as the API runner (stage > agent >
config default), so both runners ask for the same model ids and the ledger prices them alike.
"""

from __future__ import annotations

from stageflow.config import Settings
from stageflow.engine.runner import AttemptRequest, AttemptResult, Runner
from stageflow.subagents.anthropic_runner import choose_model
from stageflow.subagents.routing import ModelRoutes, load_routes


class RoutedRunner:
    """Resolves the attempt's model (and fallback) before handing it to ``inner``."""

    def __init__(self, settings: Settings, inner: Runner) -> None:
        self.inner = inner
        self.name = inner.name
        self.routes: ModelRoutes = load_routes(settings)

    async def run(self, request: AttemptRequest) -> AttemptResult:
        """Route, then run."""
        choice = choose_model(self.routes, request)
        routed = request.model_copy(update={"model": choice.model})
        result = await self.inner.run(routed)
        if result.model_requested is None:
            result = result.model_copy(update={"model_requested": choice.model})
        return result
