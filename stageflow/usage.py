"""Tokens and dollars: one attempt's ``Usage`` and one model request's ``RequestUsage``.

Below the event log (``attempt_finished`` carries a ``Usage``), the store's cost ledger and the
engine, which all speak of them.
"""

from __future__ import annotations

from stageflow.base import Model


class Usage(Model):
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


class RequestUsage(Model):
    """One model request as the cost ledger stores it: full usage, and its price in USD.

    ``cache_write_5m_tokens`` and ``cache_write_1h_tokens`` split the provider's cache writes by
    time-to-live because they are priced differently. ``priced`` is False when the answering
    model has no entry in the price table (the cost is then 0 and status says so).
    """

    model: str  # the model that answered
    model_requested: str  # the resolved model id that was asked for
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    request_id: str | None = None

    def as_usage(self) -> Usage:
        """This request as an attempt-level ``Usage`` (one request)."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_5m_tokens + self.cache_write_1h_tokens,
            cost_usd=self.cost_usd,
            requests=1,
        )
