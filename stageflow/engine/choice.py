"""Who runs an attempt and on which model, when the template leaves a choice.

A stage leaves a choice when it lists candidate agents (``agent: [a, b]``) or says ``model:
auto`` (on the stage, or as its agent's ``model``). A ``Chooser`` (``stageflow.learning`` wires
one in) decides at the attempt's start from the project's history; its decision and the scores
behind it are recorded on ``attempt_started`` (``choice``), so a replay reads the choice and
never recomputes it. Without a chooser, ``default_choice`` decides: the first candidate, and for
``auto`` the agent's own model (the config default when that is ``auto`` too).

The engine calls ``prepare`` (async: the chooser may refresh what it knows) before it plans the
starts of a run that has choices, and ``choose`` (sync, no I/O) while it plans them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.planner import StartAttempt
from stageflow.engine.state import RunState
from stageflow.workflows.spec import StageSpec

AUTO = "auto"
DEFAULT_MODEL = "default"  # routing's word for the config default


def is_auto(name: str | None) -> bool:
    """True for ``model: auto`` (any case)."""
    return name is not None and name.strip().lower() == AUTO


@dataclass(frozen=True)
class ChoiceContext:
    """What a chooser sees for one attempt.

    ``candidates`` are the agents that may run it, in the template's order, each with the
    definition the attempt would use; ``remaining_usd`` is what the run and stage caps still
    allow (the live spend of attempts in flight counted; None when uncapped).
    """

    state: RunState
    stage: StageSpec
    start: StartAttempt
    candidates: Mapping[str, AgentDefinition]
    remaining_usd: float | None = None


@dataclass(frozen=True)
class AttemptChoice:
    """The agent and the model name to ask for (never ``auto``), and what made the choice."""

    agent: str
    model: str
    record: dict[str, Any] | None = None


class Chooser(Protocol):
    """Decides agent and model for attempts whose stage leaves a choice."""

    async def prepare(self) -> None:
        """Bring what the chooser knows up to date (called before planning, may do I/O)."""
        ...

    def choose(self, ctx: ChoiceContext) -> AttemptChoice:
        """The choice for one attempt: pure apart from reading what ``prepare`` loaded."""
        ...


def leaves_choice(stage: StageSpec, agents: Mapping[str, AgentDefinition]) -> bool:
    """Whether the stage leaves a choice: several candidates, or ``auto`` for the model."""
    if stage.agent is None:
        return False
    if len(stage.agents) > 1 or is_auto(stage.model):
        return True
    agent = agents.get(stage.agent)
    return stage.model is None and agent is not None and is_auto(agent.model)


def default_model(stage: StageSpec, agent: AgentDefinition | None) -> str:
    """The model an attempt asks for without learned data: the stage's, else the agent's,
    else the config default (``auto`` at either level defers to the next)."""
    if stage.model is not None and not is_auto(stage.model):
        return stage.model
    if agent is not None and not is_auto(agent.model):
        return agent.model
    return DEFAULT_MODEL


def default_choice(ctx: ChoiceContext) -> AttemptChoice:
    """The first candidate on its default model; recorded so status says why."""
    name = next(iter(ctx.candidates))
    model = default_model(ctx.stage, ctx.candidates[name])
    return AttemptChoice(
        agent=name,
        model=model,
        record={
            "agent": {"chosen": name, "rule": "no learning here: the first candidate"},
            "model": {"chosen": model, "rule": "no learning here: the default model"},
            "why": f"{name} on {model}: no learning profiles in this process",
        },
    )
