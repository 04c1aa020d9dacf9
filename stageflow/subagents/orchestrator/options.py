"""``[orchestrator]``: the cheap model that answers the engine's structured questions.

```toml
[orchestrator]
provider = "anthropic"   # anthropic | ollama | rules (rules: never ask a model)
model = "haiku"          # an alias or model id (anthropic); the Ollama model name (ollama)
budget_usd = 0.05        # the most one question may cost (its worst case is reserved)
timeout = 20             # seconds per question; then the rules answer
ollama_host = "http://127.0.0.1:11434"
```

Whatever is configured, every question has a rule-based answer used when the model is not
reachable, over budget or answers invalidly, and the verdict records which one decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from stageflow.config import Settings
from stageflow.errors import Problem, SpecError

__all__ = ["OrchestratorOptions", "load_orchestrator_options"]

Provider = Literal["anthropic", "ollama", "rules"]
_PROVIDERS: tuple[Provider, ...] = ("anthropic", "ollama", "rules")


@dataclass(frozen=True)
class OrchestratorOptions:
    provider: Provider = "anthropic"
    model: str = "haiku"
    budget_usd: float = 0.05
    timeout: float = 20.0
    max_tokens: int = 1024
    ollama_host: str = "http://127.0.0.1:11434"


def _problem(settings: Settings, key: str, message: str) -> SpecError:
    return SpecError(Problem(message, file=str(settings.config_file), path=f"orchestrator.{key}"))


def _number(settings: Settings, table: dict[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    # TOML reads nan and inf: NaN passes every comparison (``nan <= 0`` is false) and then
    # sizes every request to 0 tokens or a timeout that never fires; say so instead
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _problem(settings, key, f"must be a positive finite number, got {value!r}")
    return float(value)


def _text(settings: Settings, table: dict[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise _problem(settings, key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def load_orchestrator_options(settings: Settings) -> OrchestratorOptions:
    """Read ``[orchestrator]``; a wrong value is a ``SpecError`` naming the key."""
    raw = settings.extra.get("orchestrator", {})
    if not isinstance(raw, dict):
        raise SpecError(
            Problem(
                "[orchestrator] must be a table",
                file=str(settings.config_file),
                path="orchestrator",
            )
        )
    unknown = sorted(set(raw) - {"provider", "model", "budget_usd", "timeout", "ollama_host"})
    if unknown:
        raise _problem(
            settings,
            unknown[0],
            "unknown key; [orchestrator] takes provider, model, budget_usd, timeout, ollama_host",
        )
    provider = raw.get("provider", "anthropic")
    if provider not in _PROVIDERS:
        raise _problem(
            settings,
            "provider",
            f"unknown provider {provider!r}; expected one of {', '.join(_PROVIDERS)}",
        )
    return OrchestratorOptions(
        provider=provider,
        model=_text(settings, raw, "model", "haiku"),
        budget_usd=_number(settings, raw, "budget_usd", 0.05),
        timeout=_number(settings, raw, "timeout", 20.0),
        ollama_host=_text(settings, raw, "ollama_host", "http://127.0.0.1:11434"),
    )
