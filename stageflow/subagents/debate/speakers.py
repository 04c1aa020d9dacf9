"""Who speaks a participant's turn: the Messages API (``ApiSpeaker``) or a script
(``OfflineSpeaker``, labelled offline, no model calls).

A turn is one request with one tool, ``statement`` (position + argument), forced with
``tool_choice``. The request goes through the caps (``spend.reserve``: its worst case is
reserved on the attempt's meter and the ledger records it), like every request of the API
runner; a reply that does not call the tool counts its text as the statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import anyio

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import ModelError
from stageflow.models.client import ModelCall, ModelClient
from stageflow.models.pricing import PriceTable
from stageflow.subagents.spend import reserve
from stageflow.workflows.debate_spec import Participant

__all__ = ["STATEMENT_TOOL", "ApiSpeaker", "OfflineSpeaker", "Speaker", "Spoken"]

STATEMENT_TOOL = "statement"
_TOOL = {
    "name": STATEMENT_TOOL,
    "description": "Give your position and argument for this round.",
    "input_schema": {
        "type": "object",
        "properties": {
            "position": {"type": "string", "description": "your stance in a few words"},
            "statement": {"type": "string", "description": "your argument"},
        },
        "required": ["position", "statement"],
    },
}
_PREAMBLE = (
    "You take part in a structured debate run by stageflow. You start with a fresh context: "
    "what you see is all there is. Argue honestly; agree when you are convinced."
)


@dataclass(frozen=True)
class Spoken:
    position: str
    statement: str
    model: str
    cost_usd: float = 0.0


class Speaker(Protocol):
    name: str

    async def speak(
        self,
        participant: Participant,
        agent: AgentDefinition | None,
        model: str,
        brief: str,
        round_no: int,
        meter: AttemptMeter,
        max_tokens: int,
    ) -> Spoken: ...


_OFFLINE_OPENING = {
    "proponent": "adopt",
    "critic": "reject",
    "devils_advocate": "reject",
    "domain_expert": "adopt with safeguards",
    "participant": "adopt with safeguards",
}


class OfflineSpeaker:
    """Scripted, deterministic statements: the participants open on their role's stance and
    converge on "adopt with safeguards" from round 2 (the devil's advocate from round 3)."""

    name = "offline"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def speak(
        self,
        participant: Participant,
        agent: AgentDefinition | None,
        model: str,
        brief: str,
        round_no: int,
        meter: AttemptMeter,
        max_tokens: int,
    ) -> Spoken:
        del agent, meter, max_tokens
        if self.delay > 0:
            await anyio.sleep(self.delay)
        late = 3 if participant.role == "devils_advocate" else 2
        stance = _OFFLINE_OPENING[participant.role] if round_no < late else "adopt with safeguards"
        statement = (
            f"[offline] {participant.label} ({participant.role}), round {round_no}: I hold "
            f"'{stance}'. Scripted statement; it read a brief of {len(brief)} characters."
        )
        return Spoken(position=stance, statement=statement, model="offline")


class ApiSpeaker:
    """One Messages API request per turn (see the module docstring)."""

    name = "anthropic"

    def __init__(self, client: ModelClient, prices: PriceTable) -> None:
        self.client = client
        self.prices = prices

    async def speak(
        self,
        participant: Participant,
        agent: AgentDefinition | None,
        model: str,
        brief: str,
        round_no: int,
        meter: AttemptMeter,
        max_tokens: int,
    ) -> Spoken:
        system = _PREAMBLE + ("\n\n" + agent.system_prompt if agent is not None else "")
        call = ModelCall(
            model=model,
            system=[{"type": "text", "text": system}],
            tools=[_TOOL],
            messages=[{"role": "user", "content": brief}],
            max_tokens=max_tokens,
            tool_choice={"type": "tool", "name": STATEMENT_TOOL},
        )
        where = f"budget exceeded in debate turn of {participant.label}, round {round_no}"
        sized, reservation = await reserve(call, meter, self.prices, self.client, where=where)
        try:
            reply = await self.client.send(sized)
        except ModelError as exc:
            if not exc.maybe_billed:
                await meter.release(reservation)
            raise
        usage = self.prices.request_usage(
            model=reply.model, model_requested=model, usage=reply.usage, request_id=reply.request_id
        )
        await meter.record(usage, reservation)
        for block in reply.tool_uses():
            args = block.get("input")
            if block.get("name") == STATEMENT_TOOL and isinstance(args, dict):
                return Spoken(
                    position=str(args.get("position") or "")[:120],
                    statement=str(args.get("statement") or ""),
                    model=reply.model,
                    cost_usd=usage.cost_usd,
                )
        return Spoken(
            position="", statement=reply.text().strip(), model=reply.model, cost_usd=usage.cost_usd
        )
