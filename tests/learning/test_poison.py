"""Poisoned history: figures no reckoning should use (NaN, negative, infinite or absurd costs,
a model the price table does not know) neither wedge the updater nor bend a choice or a
forecast toward spending more than a human agreed to."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import astuple, replace
from pathlib import Path

import pytest

from stageflow.engine.forecasts import RunForecast, StageForecast, needs_confirmation
from stageflow.learning.book import ProfileBook
from stageflow.learning.stats import MAX_ATTEMPT_USD, aggregate, sane
from tests.learning.harness import agent_file, learning_env
from tests.learning.synthetic import many, sample

ONE = """
name: one
stages:
  - id: build
    agent: worker
"""

AUTO = """
name: auto
stages:
  - id: build
    agent: worker
    model: auto
"""


def test_unusable_figures_are_left_out_and_absurd_ones_capped() -> None:
    good = sample(cost=0.2)
    poisoned = [
        sample(cost=float("nan")),
        sample(cost=-5.0),
        sample(cost=float("-inf")),
        sample(duration=float("nan")),
        sample(tokens=-1),
        sample(result="maybe"),
    ]
    huge = sample(cost=1e300, tokens=10**15)
    kept = sane([good, *poisoned, huge])
    assert [s.run_id for s in kept] == [good.run_id, huge.run_id]
    assert kept[1].cost_usd == MAX_ATTEMPT_USD and kept[1].tokens == 10**12
    # the sums of a key stay finite, whatever it holds
    row = aggregate([good, *poisoned, huge, replace(huge, run_id="x", cost_usd=float("inf"))])
    assert row is not None
    assert (row.executions, row.successes) == (3, 3)
    assert math.isfinite(row.cost_mean_usd) and row.cost_p90_usd == MAX_ATTEMPT_USD
    assert aggregate(poisoned) is None  # nothing usable: no row at all


def test_a_model_made_to_look_free_by_negative_costs_is_not_chosen_for_it() -> None:
    book = ProfileBook(
        [
            *many(10, model="claude-opus-4-7", cost=-100.0),  # poison: "opus pays you"
            *many(10, model="claude-haiku-4-5", cost=0.01),
        ]
    )
    assert book.key("developer", "feature", "claude-opus-4-7") == []
    assert len(book.key("developer", "feature", "claude-haiku-4-5")) == 10


def test_a_forecast_that_cannot_be_compared_always_asks() -> None:
    def fc(p90: float, basis: str = "prior") -> RunForecast:
        stage = StageForecast(stage="s", basis=basis)  # type: ignore[arg-type]
        return RunForecast(
            template="t",
            p50_usd=0.0,
            p90_usd=p90,
            mean_usd=0.0,
            expected_stages=1,
            expected_reworks=0,
            stages=[stage],
        )

    assert needs_confirmation(fc(float("nan")), 1.0)
    assert needs_confirmation(fc(float("inf")), 1.0)
    assert needs_confirmation(fc(0.0, "unpriced"), 1.0)
    assert needs_confirmation(fc(-3.0), 1.0) is False  # below is below (and -3 cannot come)
    assert needs_confirmation(fc(0.5), 1.0) is False
    assert needs_confirmation(fc(1.5), 1.0)
    assert needs_confirmation(fc(float("nan")), None) is False  # no threshold, no question


@pytest.mark.anyio
async def test_a_model_without_a_price_makes_the_run_wait_for_a_human(tmp_path: Path) -> None:
    agents = {"worker": agent_file("worker", "claude-nonesuch-9")}  # not in the price table
    async with learning_env(
        tmp_path, ONE, agents=agents, config="[budget]\nconfirm_above_usd = 100.0\n"
    ) as env:
        fc = await env.service.estimate("one", "Add CSV export")
        assert [(s.stage, s.basis) for s in fc.stages] == [("build", "unpriced")]
        assert fc.p90_usd == 0.0  # unknown, not free: so it must not pass the threshold
        state = await env.service.start_run("one", "Add CSV export")
        assert state.confirmation == "pending" and state.status == "waiting"
        state = await env.scheduler.drive(state.run_id, until="idle")
        assert env.runner.calls == []  # nothing ran


@pytest.mark.anyio
async def test_a_hostile_writer_of_the_tables_neither_wedges_updates_nor_bends_choices(
    tmp_path: Path,
) -> None:
    async with learning_env(tmp_path, AUTO) as env:
        state = await env.run("auto")  # one real run: the table exists with a real key
        [real] = await env.store.profiles.samples()
        # another process writes nonsense straight into the samples, under the same key
        poison = [
            replace(real, run_id=state.run_id, attempt=90 + i, cost_usd=c)
            for i, c in enumerate([-1e9, float("inf"), 1e300])
        ]
        with sqlite3.connect(env.settings.db_path) as conn:
            conn.executemany(
                "INSERT INTO profile_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [astuple(s) for s in poison],
            )
            conn.execute("UPDATE profile_state SET generation = generation + 1")
        # the next attempts are still recorded, and the key's row sums only usable figures
        state = await env.run("auto")
        rows = {r.model: r for r in await env.store.profiles.profiles()}
        row = rows[real.model]
        assert row.executions == 4  # two real attempts, inf and 1e300 capped; -1e9 left out
        assert math.isfinite(row.cost_mean_usd)
        assert [p for p in await env.store.profiles.behind()] == []  # nothing left behind
        fc = await env.service.estimate("auto", "Add CSV export")
        assert math.isfinite(fc.p90_usd) and fc.p90_usd >= 0
