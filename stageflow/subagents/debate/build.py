"""Building the debate runner and the orchestrator for a project's settings.

- ``offline``: scripted participants (``OfflineSpeaker``) and the rules as moderator (no
  model is called; the verdicts say ``rules`` with the reason ``offline``);
- ``anthropic``: participants on the Messages API, the moderator on ``[orchestrator]`` (its
  own client without SDK retries, so an unreachable endpoint falls back to rules at once);
  ``provider = "ollama"`` asks a local model through the official ``ollama`` client.
"""

from __future__ import annotations

from collections.abc import Callable

from stageflow.config import Settings
from stageflow.errors import ModelError
from stageflow.models.client import ModelClient
from stageflow.models.pricing import load_price_table
from stageflow.models.routing import load_routes
from stageflow.subagents.debate.runner import DebateRunner
from stageflow.subagents.debate.speakers import ApiSpeaker, OfflineSpeaker
from stageflow.subagents.orchestrator.ask import Orchestrator
from stageflow.subagents.orchestrator.options import (
    OrchestratorOptions,
    load_orchestrator_options,
)

__all__ = ["make_debate_runner", "make_orchestrator"]

ClientFactory = Callable[[], ModelClient]


def _anthropic(max_retries: int, timeout: float) -> ClientFactory:
    def make() -> ModelClient:
        from stageflow.models.anthropic import AnthropicClient

        return AnthropicClient(max_retries=max_retries, timeout=timeout)

    return make


def _ollama(options: OrchestratorOptions) -> ClientFactory:
    def make() -> ModelClient:
        from stageflow.subagents.orchestrator.ollama_client import OllamaClient

        return OllamaClient(host=options.ollama_host, timeout=options.timeout)

    return make


def make_orchestrator(
    settings: Settings, *, offline: bool = False, client: ClientFactory | None = None
) -> Orchestrator:
    """The orchestrator of ``settings`` (``offline``: the rules only)."""
    options = load_orchestrator_options(settings)
    prices = load_price_table(settings)
    routes = load_routes(settings)
    if offline:
        options = OrchestratorOptions(provider="rules", model=options.model)
        return Orchestrator(options, client=None, prices=prices, model=options.model)
    if options.provider == "ollama":
        factory = client or _ollama(options)
        return Orchestrator(options, client=factory, prices=prices, model=options.model)
    factory = client or _anthropic(0, options.timeout)
    return Orchestrator(options, client=factory, prices=prices, model=routes.resolve(options.model))


def make_debate_runner(
    settings: Settings,
    runner_name: str | None,
    *,
    offline_delay: float = 0.0,
    client: ClientFactory | None = None,
    orchestrator_client: ClientFactory | None = None,
) -> DebateRunner:
    """The debate runner for the agent runner in use; ``ModelError`` when it cannot debate."""
    routes = load_routes(settings)
    if runner_name == "offline":
        return DebateRunner(
            OfflineSpeaker(delay=offline_delay),
            make_orchestrator(settings, offline=True),
            resolve=routes.resolve,
            offline=True,
        )
    if runner_name != "anthropic":
        raise ModelError(
            f"debate stages need the API runner (ANTHROPIC_API_KEY, STAGEFLOW_RUNNER=anthropic) "
            f"or STAGEFLOW_RUNNER=offline; the '{runner_name or 'auto'}' runner cannot run them",
            retryable=False,
            kind="unavailable",
        )
    speaker_client = (client or _anthropic(2, 600.0))()
    return DebateRunner(
        ApiSpeaker(speaker_client, load_price_table(settings)),
        make_orchestrator(settings, client=orchestrator_client),
        resolve=routes.resolve,
    )
