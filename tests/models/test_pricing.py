"""Prices, the cost of a request, the attempt roll-up, and price overrides in config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import Settings, load_settings
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import SpecError, SpecErrors
from stageflow.models.client import RawUsage
from stageflow.models.pricing import (
    DEFAULT_PRICES,
    PRICES_AS_OF,
    Price,
    PriceTable,
    load_price_table,
)
from stageflow.usage import RequestUsage, Usage

TABLE = PriceTable()


def config(tmp_path: Path, text: str) -> Settings:
    """Settings loaded from a real ``.stageflow/config.toml``."""
    state = tmp_path / ".stageflow"
    state.mkdir(exist_ok=True)
    (state / "config.toml").write_text(text, encoding="utf-8")
    return load_settings(tmp_path)


# -- the roll-up, computed by hand ------------------------------------------------------------


def ledger() -> list[RequestUsage]:
    """Five requests of one attempt: two on Sonnet 4.6 (one by a dated snapshot id), two on
    Haiku 4.5, one on a model the table does not know."""
    return [
        TABLE.request_usage(
            model="claude-sonnet-4-6-20260101",
            model_requested="claude-sonnet-4-6",
            usage=RawUsage(input_tokens=1000, output_tokens=2000, cache_write_5m_tokens=4000),
            request_id="req_1",
        ),
        TABLE.request_usage(
            model="claude-sonnet-4-6",
            model_requested="claude-sonnet-4-6",
            usage=RawUsage(
                input_tokens=200,
                output_tokens=500,
                cache_write_1h_tokens=1000,
                cache_read_tokens=4000,
            ),
        ),
        TABLE.request_usage(
            model="claude-haiku-4-5",
            model_requested="claude-haiku-4-5",
            usage=RawUsage(
                input_tokens=3000,
                output_tokens=1000,
                cache_write_5m_tokens=2000,
                cache_write_1h_tokens=500,
                cache_read_tokens=10000,
            ),
        ),
        TABLE.request_usage(
            model="claude-haiku-4-5",
            model_requested="claude-haiku-4-5",
            usage=RawUsage(input_tokens=100, output_tokens=40, cache_read_tokens=2000),
        ),
        TABLE.request_usage(
            model="local-llm",
            model_requested="local-llm",
            usage=RawUsage(input_tokens=50, output_tokens=10),
        ),
    ]


def test_each_request_is_priced_by_hand_computed_rates() -> None:
    # USD per MTok: Sonnet 4.6 in 3, out 15, 5m 3.75, 1h 6, read 0.3;
    #               Haiku 4.5  in 1, out 5,  5m 1.25, 1h 2, read 0.1.
    # req 1 (Sonnet): 1000*3 + 2000*15 + 4000*3.75              = 3000+30000+15000      = 48000
    # req 2 (Sonnet): 200*3 + 500*15 + 1000*6 + 4000*0.3        = 600+7500+6000+1200    = 15300
    # req 3 (Haiku):  3000*1 + 1000*5 + 2000*1.25 + 500*2 + 10000*0.1
    #                                                 = 3000+5000+2500+1000+1000 = 12500
    # req 4 (Haiku):  100*1 + 40*5 + 2000*0.1                   = 100+200+200           = 500
    # req 5 (unknown model): not priced                                                  = 0
    # (all in USD x 1e6, so divide by 1,000,000)
    costs = [r.cost_usd for r in ledger()]
    assert costs == [0.048, 0.0153, 0.0125, 0.0005, 0.0]
    assert [r.priced for r in ledger()] == [True, True, True, True, False]


def test_attempt_usage_rolls_up_every_request_exactly() -> None:
    total = Usage()
    for request in ledger():
        total = total + request.as_usage()
    # cost: 0.048 + 0.0153 + 0.0125 + 0.0005 + 0 = 0.0763 (Usage.__add__ rounds to 1e-10)
    # input: 1000 + 200 + 3000 + 100 + 50 = 4350;  output: 2000 + 500 + 1000 + 40 + 10 = 3550
    # cache read: 0 + 4000 + 10000 + 2000 + 0 = 16000
    # cache write (5m + 1h): 4000 + 1000 + (2000 + 500) + 0 + 0 = 7500
    assert total == Usage(
        input_tokens=4350,
        output_tokens=3550,
        cache_read_tokens=16000,
        cache_write_tokens=7500,
        cost_usd=0.0763,
        requests=5,
    )


@pytest.mark.anyio
async def test_the_attempt_meter_sums_the_same_ledger() -> None:
    recorded: list[RequestUsage] = []

    async def sink(usage: RequestUsage) -> None:
        recorded.append(usage)

    meter = AttemptMeter(budget_usd=0.1, sink=sink)
    for request in ledger():
        await meter.record(request)
    assert meter.usage.cost_usd == 0.0763
    assert meter.usage.requests == 5
    assert recorded == ledger()
    assert meter.remaining_usd() == pytest.approx(0.1 - 0.0763, abs=1e-12)


def test_the_ledger_keeps_ttl_split_request_id_and_both_model_names() -> None:
    first = ledger()[0]
    assert (first.cache_write_5m_tokens, first.cache_write_1h_tokens) == (4000, 0)
    assert first.model == "claude-sonnet-4-6-20260101"
    assert first.model_requested == "claude-sonnet-4-6"
    assert first.request_id == "req_1"


# -- lookup -----------------------------------------------------------------------------------


def test_a_dated_snapshot_id_uses_the_entry_of_its_model() -> None:
    assert TABLE.lookup("claude-sonnet-4-6-20260101") is DEFAULT_PRICES["claude-sonnet-4-6"]
    assert TABLE.lookup("claude-opus-4-20250514") is DEFAULT_PRICES["claude-opus-4-0"]
    assert TABLE.lookup("claude-3-5-haiku-latest") is DEFAULT_PRICES["claude-3-5-haiku"]


def test_only_an_eight_digit_suffix_counts_as_a_snapshot() -> None:
    assert TABLE.lookup("claude-sonnet-4-6-2026") is None
    assert TABLE.lookup("claude-sonnet-4-6x") is None


def test_an_unpriced_model_costs_nothing_and_says_so() -> None:
    assert TABLE.lookup("gpt-4o") is None
    assert TABLE.cost("gpt-4o", RawUsage(input_tokens=10**6, output_tokens=10**6)) == (0.0, False)


def test_an_unknown_answering_model_is_priced_as_the_requested_one() -> None:
    record = TABLE.request_usage(
        model="claude-test",
        model_requested="claude-haiku-4-5",
        usage=RawUsage(input_tokens=1_000_000),
    )
    assert (record.cost_usd, record.priced, record.model) == (1.0, True, "claude-test")


def test_default_prices_follow_the_published_list() -> None:
    assert DEFAULT_PRICES["claude-opus-4-8"] == Price(5.0, 25.0, 6.25, 10.0, 0.5)
    assert DEFAULT_PRICES["claude-opus-4-1"] == Price(15.0, 75.0, 18.75, 30.0, 1.5)
    assert DEFAULT_PRICES["claude-sonnet-4-5"] == Price(3.0, 15.0, 3.75, 6.0, 0.3)
    assert DEFAULT_PRICES["claude-haiku-4-5"] == Price(1.0, 5.0, 1.25, 2.0, 0.1)
    assert DEFAULT_PRICES["claude-3-5-haiku"] == Price(0.8, 4.0, 1.0, 1.6, 0.08)
    assert DEFAULT_PRICES["claude-3-haiku"] == Price(0.25, 1.25, 0.3, 0.5, 0.03)
    assert TABLE.as_of == PRICES_AS_OF


def test_min_cost_is_every_input_token_at_the_cache_read_rate() -> None:
    # 10,000 tokens x 0.3 USD/MTok = 0.003
    assert TABLE.min_cost("claude-sonnet-4-6", 10_000) == 0.003
    assert TABLE.min_cost("unknown-model", 10_000) == 0.0


# -- config overrides -------------------------------------------------------------------------


def test_without_a_prices_table_the_defaults_apply(tmp_path: Path) -> None:
    table = load_price_table(config(tmp_path, 'runner = "offline"\n'))
    assert dict(table.prices) == DEFAULT_PRICES
    assert table.as_of == PRICES_AS_OF


def test_a_new_model_gets_cache_prices_derived_from_its_input(tmp_path: Path) -> None:
    table = load_price_table(config(tmp_path, '[prices."claude-next"]\ninput = 2.0\noutput = 10\n'))
    # 2.0 x 1.25 = 2.5; 2.0 x 2 = 4.0; 2.0 x 0.1 = 0.2
    assert table.lookup("claude-next-20270101") == Price(2.0, 10.0, 2.5, 4.0, 0.2)
    assert table.lookup("claude-sonnet-4-6") == DEFAULT_PRICES["claude-sonnet-4-6"]


def test_a_partial_override_keeps_the_rest_of_the_default(tmp_path: Path) -> None:
    text = (
        '[prices."claude-sonnet-4-6"]\noutput = 12.0\n'
        '[prices."claude-haiku-4-5"]\ninput = 0.5\ncache_read = 0.04\n'
        '[prices."claude-3-haiku"]\noutput = 1.0\n'
    )
    table = load_price_table(config(tmp_path, text))
    assert table.lookup("claude-sonnet-4-6") == Price(3.0, 12.0, 3.75, 6.0, 0.3)
    # a changed input moves the cache writes (0.5 x 1.25, 0.5 x 2); cache_read was given
    assert table.lookup("claude-haiku-4-5") == Price(0.5, 5.0, 0.625, 1.0, 0.04)
    # input unchanged: Haiku 3's own cache prices stay
    assert table.lookup("claude-3-haiku") == Price(0.25, 1.0, 0.3, 0.5, 0.03)


def test_a_snapshot_id_override_starts_from_its_models_default(tmp_path: Path) -> None:
    table = load_price_table(config(tmp_path, '[prices."claude-opus-4-7-20260301"]\noutput = 20\n'))
    assert table.lookup("claude-opus-4-7-20260301") == Price(5.0, 20.0, 6.25, 10.0, 0.5)
    assert table.lookup("claude-opus-4-7") == DEFAULT_PRICES["claude-opus-4-7"]


def test_the_override_date_is_recorded(tmp_path: Path) -> None:
    table = load_price_table(
        config(tmp_path, '[prices]\nas_of = "2027-01-15"\n[prices."x"]\ninput = 1\noutput = 2\n')
    )
    assert table.as_of == "2027-01-15"


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ('[prices."claude-x"]\ninput = "five"\noutput = 1\n', 'prices."claude-x".input', "number"),
        ('[prices."claude-x"]\ninput = -1.0\noutput = 1\n', 'prices."claude-x".input', "non-neg"),
        ('[prices."claude-x"]\ninput = true\noutput = 1\n', 'prices."claude-x".input', "number"),
        ('[prices."claude-x"]\ninput = nan\noutput = 1\n', 'prices."claude-x".input', "number"),
        (
            '[prices."claude-sonnet-4-6"]\ncache_write = 1.0\n',
            'prices."claude-sonnet-4-6".cache_write',
            "unknown key",
        ),
        ('[prices."claude-x"]\ninput = 1.0\n', 'prices."claude-x"', "'output'"),
        ('[prices]\n"claude-x" = 3.0\n', 'prices."claude-x"', "table"),
        ('prices = "cheap"\n', "prices", "table"),
        ("[prices]\nas_of = 2027\n", "prices.as_of", "date"),
    ],
)
def test_a_bad_price_names_config_toml_and_the_key(
    tmp_path: Path, text: str, path: str, words: str
) -> None:
    settings = config(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_price_table(settings)
    problem = info.value.problem
    assert problem.file == str(tmp_path / ".stageflow" / "config.toml")
    assert problem.path == path
    assert words in problem.message
    assert ".stageflow/config.toml" in str(info.value)
    assert path in str(info.value)


def test_all_bad_prices_are_reported_together(tmp_path: Path) -> None:
    text = '[prices."a"]\ninput = -1\noutput = 1\n[prices."b"]\ninput = 1\noutput = "x"\n'
    with pytest.raises(SpecErrors) as info:
        load_price_table(config(tmp_path, text))
    assert [p.path for p in info.value.problems] == ['prices."a".input', 'prices."b".output']
