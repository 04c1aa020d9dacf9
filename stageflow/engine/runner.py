"""The runner seam: what the engine hands a runner per stage attempt, and what it gets back.

The engine knows nothing of models or SDKs. A runner (``stageflow.subagents``) receives an
``AttemptRequest`` and returns an ``AttemptResult``; it may raise ``RunFailure`` subclasses
(``ModelError(retryable=...)``, ``BudgetExceeded``) and must honour anyio cancellation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stageflow.agents.definition import AgentDefinition
from stageflow.workflows.spec import StageSpec

AttemptStatus = Literal["passed", "failed", "changes_requested"]


class Usage(BaseModel):
    """Tokens and dollars of one attempt (summed over its model requests)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            requests=self.requests + other.requests,
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class InputArtifact(BaseModel):
    """An upstream artifact named in ``needs`` (or this stage's previous version on a rework)."""

    stage: str
    name: str
    version: int
    content: str


class AttemptRequest(BaseModel):
    """Everything one fresh-context attempt may see."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    stage: StageSpec
    attempt: int
    kind: Literal["initial", "retry", "rework", "resume"] = "initial"
    task: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    agent: AgentDefinition | None = None  # None for command stages
    model: str | None = None  # resolved: stage model > agent model > default
    artifacts: list[InputArtifact] = Field(default_factory=list)
    previous: list[InputArtifact] = Field(default_factory=list)  # own artifacts, on a rework
    feedback: str | None = None
    workdir: Path
    budget_remaining_usd: float | None = None
    timeout: float | None = None


class AttemptResult(BaseModel):
    """What a runner hands back; artifacts are name -> text."""

    status: AttemptStatus
    summary: str = ""
    artifacts: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None  # the model that answered
    runner: str = "unknown"  # offline | anthropic | claude-code | command
    error: str | None = None


class Runner(Protocol):
    """Runs one stage attempt. Implementations must be cancellation-safe."""

    name: str

    async def run(self, request: AttemptRequest) -> AttemptResult: ...
