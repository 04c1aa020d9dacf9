"""What a model request may cost, reserved before it is sent.

A cap is only kept if no request can cost more than what is left when it starts. So before
each request the loop reserves its worst case: every input token at the dearest input rate it
can be billed at (a cache write costs more than plain input; a 1-hour write only when the
request asks for one) plus ``max_tokens`` of output. The input is
bounded by the serialised request's UTF-8 bytes (a token covers at least one byte) plus the
API's framing; when that bound does not fit, the provider's own token count (with a margin)
replaces it. ``max_tokens`` is lowered to what the caps still allow, and a request that cannot
fit even ``MIN_OUTPUT_TOKENS`` of reply is not sent (``BudgetExceeded``: the run pauses).

The reservation is held on the attempt's meter, where concurrent attempts of the run see it,
and recorded in the ledger as the request starts, so a process killed before the reply
counts it as spent (``stageflow.engine.metering``).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from stageflow.engine.runner import AttemptMeter, Reservation
from stageflow.errors import BudgetExceeded
from stageflow.models.client import ModelCall, ModelClient

if TYPE_CHECKING:
    from stageflow.models.pricing import PriceTable

__all__ = ["MIN_OUTPUT_TOKENS", "input_bound", "reserve"]

MIN_OUTPUT_TOKENS = 512  # a reply shorter than this cannot do a stage's work
FRAMING_TOKENS = 1024  # the API's rendering of the system prompt, tools and turns
COUNT_MARGIN = 1.05  # the provider's count is an estimate; billed input may differ a little


def _body(call: ModelCall) -> str:
    return json.dumps([call.system, call.tools, call.messages], ensure_ascii=False, default=str)


def input_bound(call: ModelCall) -> int:
    """An upper bound on the input tokens of ``call``: its bytes plus the framing."""
    # a lone surrogate (sent as U+FFFD, see models/anthropic.py) counts as its 3 bytes
    return len(_body(call).encode("utf-8", errors="surrogatepass")) + FRAMING_TOKENS


def long_cache(call: ModelCall) -> bool:
    """Whether ``call`` may be billed 1-hour cache writes: some block asks for ``ttl: 1h``
    (the text appearing anywhere counts, which only errs towards a larger reservation)."""
    return '"1h"' in _body(call)


async def _counted(client: ModelClient, call: ModelCall) -> int | None:
    count = getattr(client, "count_tokens", None)
    if count is None:
        return None
    try:
        tokens = await count(call)
    except Exception:  # the bound stands; counting is an optimisation
        return None
    if not isinstance(tokens, int) or tokens <= 0:
        return None
    return math.ceil(tokens * COUNT_MARGIN) + 64


async def reserve(
    call: ModelCall,
    meter: AttemptMeter,
    prices: PriceTable,
    client: ModelClient,
    *,
    where: str,
) -> tuple[ModelCall, Reservation]:
    """``call`` with ``max_tokens`` lowered to what the caps allow, and its reservation.

    Raises ``BudgetExceeded`` when not even a short reply fits, or when a capped request's
    model has no price (its cost could not be counted against the cap).
    """
    bound = input_bound(call)
    hour = long_cache(call)
    remaining = meter.remaining_usd()
    if remaining is not None:
        worst_in = prices.worst_case(call.model, bound, MIN_OUTPUT_TOKENS, long_cache=hour)
        if worst_in is None:
            raise BudgetExceeded(
                f"{where}: {call.model} has no price, so its requests cannot be counted against "
                f'the budget; add [prices."{call.model}"] to .stageflow/config.toml',
                spent_usd=meter.usage.cost_usd,
                budget_usd=round(meter.usage.cost_usd + remaining, 10),
            )
        if worst_in > remaining:
            counted = await _counted(client, call)
            if counted is not None:
                bound = min(bound, counted)
            remaining = meter.remaining_usd()  # read again: the count was a round trip
        assert remaining is not None
        floor = prices.worst_case(call.model, bound, 0, long_cache=hour) or 0.0
        allowed = prices.output_tokens_for(call.model, remaining - floor) or 0
        max_tokens = min(call.max_tokens, allowed)
        if max_tokens < MIN_OUTPUT_TOKENS:
            spent = meter.usage.cost_usd
            need = prices.worst_case(call.model, bound, MIN_OUTPUT_TOKENS, long_cache=hour) or 0.0
            raise BudgetExceeded(
                f"{where}: the next model request was not sent; this attempt has spent "
                f"${spent:.4f} and the caps allow ${remaining:.4f} more, but the request "
                f"(up to {bound} input tokens to {call.model} and a reply of at least "
                f"{MIN_OUTPUT_TOKENS} tokens) could cost ${need:.4f}",
                spent_usd=spent,
                budget_usd=round(spent + remaining, 10),
            )
        call = replace(call, max_tokens=max_tokens)
    usd = prices.worst_case(call.model, bound, call.max_tokens, long_cache=hour) or 0.0
    # no await between reading the caps and holding the room: a concurrent attempt of the run
    # cannot reserve the same dollars (meter.begin appends before it writes the ledger)
    return call, await meter.begin(usd, call.model)
