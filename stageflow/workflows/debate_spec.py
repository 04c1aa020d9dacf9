"""The ``debate:`` block of a stage: who argues, for how many rounds, who moderates.

```yaml
- id: decide
  debate:
    question: "Should we split the monolith?"   # default: the run's task
    participants:
      - {agent: proponent, role: proponent, model: opus}
      - {agent: critic, role: critic, model: sonnet}
    rounds: {min: 2, max: 4}                     # or rounds: 3 (min = max = 3)
    consensus_threshold: 0.75                    # agreement (0-1) that may conclude
    moderator: haiku                             # or {model: haiku, agent: moderator}
    decision: true                               # record the ADR in the knowledge base
  produces: [decision]
```

Round 1 is opening arguments, later rounds counter-arguments; after each round the moderator
gives a structured verdict; the engine enforces ``min``/``max`` whatever it says. The stage's
first ``produces`` artifact receives the decision in ADR form.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from stageflow.base import Model

__all__ = ["DebateSpec", "Moderator", "Participant", "Rounds"]

Role = Literal["proponent", "critic", "devils_advocate", "domain_expert", "participant"]


class _Model(Model):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Participant(_Model):
    """One voice of the debate: an agent (its prompt), a role, optionally its own model."""

    agent: str
    role: Role = "participant"
    model: str | None = None  # overrides the agent's model
    name: str | None = None  # shown in the transcript; default: the agent's name

    @property
    def label(self) -> str:
        return self.name or self.agent


class Rounds(_Model):
    """At least ``min`` rounds, at most ``max``."""

    min: int = Field(1, ge=1, le=20)
    max: int = Field(3, ge=1, le=20)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"min": data, "max": data}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Rounds:
        if self.min > self.max:
            raise ValueError(f"rounds: min ({self.min}) is more than max ({self.max})")
        return self


class Moderator(_Model):
    """Who judges each round: a model (cheap by default: ``[orchestrator] model``), with an
    optional agent whose prompt guides it."""

    model: str | None = None  # None: the [orchestrator] model (haiku unless configured)
    agent: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"model": data}
        return data


class DebateSpec(_Model):
    """See the module docstring."""

    question: str = ""  # default: the run's task
    participants: list[Participant] = Field(min_length=2, max_length=8)
    rounds: Rounds = Field(default_factory=Rounds)
    consensus_threshold: float = Field(0.75, ge=0.0, le=1.0)
    moderator: Moderator = Field(default_factory=Moderator)
    # the previous round's statements are summarised when they exceed this many tokens
    summary_tokens: int = Field(1500, ge=100, le=50_000)
    max_tokens: int = Field(2048, ge=512, le=32_000)  # per participant turn
    decision: bool = True  # outputs.decision: the ADR goes into the knowledge base

    @model_validator(mode="after")
    def _unique_labels(self) -> DebateSpec:
        labels = [p.label for p in self.participants]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(
                f"participants named twice: {', '.join(dupes)}; give each a distinct 'name'"
            )
        return self

    def agent_names(self) -> list[str]:
        """Every agent the debate uses (participants, then the moderator's)."""
        names = [p.agent for p in self.participants]
        if self.moderator.agent:
            names.append(self.moderator.agent)
        return list(dict.fromkeys(names))
