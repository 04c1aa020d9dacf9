"""Model prices and the cost of one model request.

Prices are USD per million tokens (MTok) for five kinds of tokens: plain input, output, 5-minute
and 1-hour prompt-cache writes, and cache reads. ``DEFAULT_PRICES`` is a dated copy of the public
price list; ``.stageflow/config.toml`` can override or add models::

    [prices."claude-opus-4-8"]
    input = 5.0
    output = 25.0        # cache_* default to 1.25x / 2x / 0.1x of input when omitted

Costs are computed in exact decimal arithmetic on the prices as written and converted to float
once per request, so a request's ``cost_usd`` is the float nearest to its true value; sums over
requests (``Usage.__add__``) are rounded to 10 decimal places.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stageflow.config import Settings
from stageflow.errors import Problem, SpecError, SpecErrors
from stageflow.models.client import RawUsage
from stageflow.usage import RequestUsage

__all__ = [
    "DEFAULT_PRICES",
    "PRICES_AS_OF",
    "PRICES_SOURCE",
    "Price",
    "PriceTable",
    "load_price_table",
]

PRICES_AS_OF = "2026-11-21"
PRICES_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"

# The provider's standard prompt-caching multipliers of the input price.
CACHE_WRITE_5M_FACTOR = 1.25
CACHE_WRITE_1H_FACTOR = 2.0
CACHE_READ_FACTOR = 0.1

PRICE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_SNAPSHOT = re.compile(r"-(\d{8}|latest)$")  # claude-sonnet-4-6-20260101, claude-3-5-haiku-latest
_MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    @classmethod
    def standard(
        cls,
        input: float,
        output: float,
        *,
        cache_write_5m: float | None = None,
        cache_write_1h: float | None = None,
        cache_read: float | None = None,
    ) -> Price:
        """A price whose omitted cache prices follow the standard multipliers of ``input``."""
        # rounded so that 3.0 * 0.1 gives 0.3, not 0.30000000000000004
        return cls(
            input=input,
            output=output,
            cache_write_5m=_or(cache_write_5m, round(input * CACHE_WRITE_5M_FACTOR, 6)),
            cache_write_1h=_or(cache_write_1h, round(input * CACHE_WRITE_1H_FACTOR, 6)),
            cache_read=_or(cache_read, round(input * CACHE_READ_FACTOR, 6)),
        )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _family(models: tuple[str, ...], price: Price) -> dict[str, Price]:
    return dict.fromkeys(models, price)


DEFAULT_PRICES: dict[str, Price] = {
    **_family(
        (
            "claude-opus-5",
            "claude-opus-4-8",
            "claude-opus-4-7",
            "claude-opus-4-6",
            "claude-opus-4-5",
        ),
        Price.standard(5.0, 25.0),
    ),
    # "claude-opus-4" / "claude-sonnet-4": the -4-0 models' snapshot ids are
    # claude-opus-4-20250514 and claude-sonnet-4-20250514, which strip to these
    **_family(
        ("claude-opus-4-1", "claude-opus-4-0", "claude-opus-4", "claude-3-opus"),
        Price.standard(15.0, 75.0),
    ),
    **_family(
        (
            "claude-sonnet-4-6",
            "claude-sonnet-4-5",
            "claude-sonnet-4-0",
            "claude-sonnet-4",
            "claude-3-7-sonnet",
        ),
        Price.standard(3.0, 15.0),
    ),
    "claude-haiku-4-5": Price.standard(1.0, 5.0),
    "claude-3-5-haiku": Price.standard(0.8, 4.0),
    "claude-3-haiku": Price.standard(
        0.25, 1.25, cache_write_5m=0.30, cache_write_1h=0.50, cache_read=0.03
    ),
}


def _usd(pairs: list[tuple[int, float]]) -> float:
    """Exact sum of tokens x USD/MTok, as the nearest float."""
    total = sum((Decimal(tokens) * Decimal(repr(rate)) for tokens, rate in pairs), Decimal(0))
    return float(total / _MTOK)


@dataclass(frozen=True)
class PriceTable:
    """Prices by model id, with the date they were taken from the price list."""

    prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    as_of: str = PRICES_AS_OF

    def lookup(self, model: str) -> Price | None:
        """The price of ``model``: an exact entry, else the entry without a ``-YYYYMMDD`` suffix."""
        price = self.prices.get(model)
        if price is None:
            base = _SNAPSHOT.sub("", model)
            if base != model:
                price = self.prices.get(base)
        return price

    def cost(self, model: str, usage: RawUsage) -> tuple[float, bool]:
        """USD for one request's usage and whether ``model`` was priced ((0.0, False) if not)."""
        price = self.lookup(model)
        if price is None:
            return 0.0, False
        return _usd(
            [
                (usage.input_tokens, price.input),
                (usage.output_tokens, price.output),
                (usage.cache_write_5m_tokens, price.cache_write_5m),
                (usage.cache_write_1h_tokens, price.cache_write_1h),
                (usage.cache_read_tokens, price.cache_read),
            ]
        ), True

    def request_usage(
        self,
        *,
        model: str,
        model_requested: str,
        usage: RawUsage,
        request_id: str | None = None,
    ) -> RequestUsage:
        """The ledger record of one request, priced by the model that answered.

        When the answering model is not in the table but the requested one is, the request is
        priced as the requested model (an estimate beats recording nothing); ``priced`` is False
        only when neither is known.
        """
        cost, priced = self.cost(model, usage)
        if not priced and model_requested != model:
            cost, priced = self.cost(model_requested, usage)
        return RequestUsage(
            model=model,
            model_requested=model_requested,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cost_usd=cost,
            priced=priced,
            request_id=request_id,
        )

    def worst_case(
        self, model: str, input_tokens: int, output_tokens: int, *, long_cache: bool = True
    ) -> float | None:
        """The most a request of ``model`` can cost with at most ``input_tokens`` in and
        ``output_tokens`` out: every input token at the dearest input rate it can be billed at
        (a cache write costs more than plain input; the 1-hour write only when the request
        asks for it, ``long_cache``), every output token. None when ``model`` has no price."""
        price = self.lookup(model)
        if price is None:
            return None
        dearest = max(price.input, price.cache_write_5m)
        if long_cache:
            dearest = max(dearest, price.cache_write_1h)
        return _usd([(input_tokens, dearest), (output_tokens, price.output)])

    def output_tokens_for(self, model: str, usd: float) -> int | None:
        """How many output tokens of ``model`` ``usd`` pays for (None: no price)."""
        price = self.lookup(model)
        if price is None:
            return None
        if price.output <= 0:
            return 2**31 - 1
        return int(Decimal(repr(max(0.0, usd))) * _MTOK / Decimal(repr(price.output)))

    def min_cost(self, model: str, input_tokens: int) -> float:
        """A lower bound on a request's cost: every input token read from cache, no output.

        Used before sending: a request whose lower bound passes the remaining budget is not sent.
        Unpriced models cost 0.0.
        """
        price = self.lookup(model)
        if price is None:
            return 0.0
        return _usd([(input_tokens, price.cache_read)])


def load_price_table(settings: Settings) -> PriceTable:
    """``DEFAULT_PRICES`` overlaid by the ``[prices]`` table of ``.stageflow/config.toml``.

    Each ``[prices."<model>"]`` entry may set any of ``input``, ``output``, ``cache_write_5m``,
    ``cache_write_1h``, ``cache_read`` (non-negative numbers). For a model with a default price,
    omitted fields keep it, except that cache prices follow a changed ``input`` by the standard
    multipliers; a new model needs ``input`` and ``output``. ``[prices] as_of = "..."`` dates
    the overrides. Mistakes raise ``SpecError`` naming the file and the key.
    """
    section = settings.extra.get("prices")
    if section is None:
        return PriceTable(dict(DEFAULT_PRICES), PRICES_AS_OF)
    file = str(settings.config_file)
    if not isinstance(section, dict):
        raise SpecError(Problem("must be a table of model ids", file=file, path="prices"))
    problems: list[Problem] = []
    prices = dict(DEFAULT_PRICES)
    as_of = PRICES_AS_OF
    for model, entry in section.items():
        if model == "as_of":
            if isinstance(entry, str) and entry.strip():
                as_of = entry.strip()
            else:
                problems.append(Problem("must be a date string", file=file, path="prices.as_of"))
            continue
        path = f'prices."{model}"'
        if not isinstance(entry, dict):
            problems.append(Problem(f"must be a table with {_fields()}", file=file, path=path))
            continue
        price = _override(PriceTable(prices).lookup(model), entry, file, path, problems)
        if price is not None:
            prices[model] = price
    _raise(problems)
    return PriceTable(prices, as_of)


def _override(
    base: Price | None, entry: dict[str, Any], file: str, path: str, problems: list[Problem]
) -> Price | None:
    values: dict[str, float] = {}
    ok = True
    for key, value in entry.items():
        if key not in PRICE_FIELDS:
            problems.append(
                Problem(f"unknown key; expected {_fields()}", file=file, path=f"{path}.{key}")
            )
            ok = False
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            problems.append(
                Problem(
                    f"must be a non-negative number of USD per million tokens, got {value!r}",
                    file=file,
                    path=f"{path}.{key}",
                )
            )
            ok = False
        else:
            values[key] = float(value)
    if not ok:
        return None
    if base is None:
        if not {"input", "output"} <= values.keys():
            problems.append(
                Problem(
                    "a model without a default price needs both 'input' and 'output'",
                    file=file,
                    path=path,
                )
            )
            return None
        base = Price.standard(values["input"], values["output"])
    if "input" in values:
        return Price.standard(
            values["input"],
            values.get("output", base.output),
            cache_write_5m=values.get("cache_write_5m"),
            cache_write_1h=values.get("cache_write_1h"),
            cache_read=values.get("cache_read"),
        )
    return Price(
        input=base.input,
        output=values.get("output", base.output),
        cache_write_5m=values.get("cache_write_5m", base.cache_write_5m),
        cache_write_1h=values.get("cache_write_1h", base.cache_write_1h),
        cache_read=values.get("cache_read", base.cache_read),
    )


def _fields() -> str:
    return ", ".join(PRICE_FIELDS)


def _raise(problems: list[Problem]) -> None:
    if len(problems) == 1:
        raise SpecError(problems[0])
    if problems:
        raise SpecErrors(problems)
