"""A local orchestrator model through Ollama's API, with the official ``ollama`` client (the
optional ``ollama`` extra: ``pip install 'stageflow[ollama]'``).

Only the orchestrator uses it: one chat request per question, the answer's JSON schema passed
as ``format`` so the reply is the answer as JSON text (``ask._parsed`` reads it). A missing
package or a refused connection is a ``ModelError``, so the rules answer instead. Local models
cost nothing: the usage is reported with zero tokens priced (the model is not in the table).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from stageflow.errors import ModelError
from stageflow.models.client import ModelCall, ModelReply, RawUsage

__all__ = ["OllamaClient"]


class OllamaClient:
    """The ``ModelClient`` seam over ``ollama.AsyncClient`` (see the module docstring)."""

    def __init__(self, *, host: str, timeout: float) -> None:
        try:
            module: Any = importlib.import_module("ollama")
        except ImportError as exc:
            raise ModelError(
                "the ollama package is not installed (pip install 'stageflow[ollama]')",
                retryable=False,
                kind="unavailable",
            ) from exc
        self._module = module
        self._client = module.AsyncClient(host=host, timeout=timeout)

    async def send(self, call: ModelCall) -> ModelReply:
        schema = call.tools[0].get("input_schema") if call.tools else None
        messages = [{"role": "system", "content": b.get("text", "")} for b in call.system]
        for m in call.messages:
            content = m["content"]
            text = content if isinstance(content, str) else json.dumps(content)
            messages.append({"role": m["role"], "content": text})
        try:
            reply = await self._client.chat(
                model=call.model, messages=messages, format=schema, stream=False
            )
        except (ConnectionError, OSError) as exc:
            raise ModelError(
                f"Ollama is not reachable: {exc}", retryable=True, kind="connection"
            ) from exc
        except self._module.ResponseError as exc:
            raise ModelError(f"Ollama answered an error: {exc}", retryable=False) from exc
        except Exception as exc:  # httpx's own (a read timeout, a dropped connection)
            if not type(exc).__module__.startswith("httpx"):
                raise
            raise ModelError(
                f"Ollama request failed: {type(exc).__name__}: {exc}",
                retryable=True,
                kind="connection",
            ) from exc
        text = str(reply["message"]["content"])
        usage = RawUsage(
            input_tokens=int(reply.get("prompt_eval_count") or 0),
            output_tokens=int(reply.get("eval_count") or 0),
        )
        return ModelReply(
            content=[{"type": "text", "text": text}],
            stop_reason="end_turn",
            model=call.model,
            usage=usage,
        )

    async def aclose(self) -> None:
        close = getattr(self._client, "_client", None)
        if close is not None:
            await close.aclose()
