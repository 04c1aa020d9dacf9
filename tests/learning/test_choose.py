"""``model: auto`` decisions on synthetic histories: the default without data, the cheapest model
clearing the threshold, escalation past a model that failed in the stage, the drop rule, the
bounded exploration share, and the budget: exploration never picks a model whose worst case
does not fit what the caps allow."""

from __future__ import annotations

import random

import pytest

from stageflow.learning.book import ProfileBook
from stageflow.learning.choose import ModelDecision, ModelOption, choose_model, model_options
from stageflow.learning.explore import SHARE_WINDOW, dropped, wilson_upper
from stageflow.learning.priors import prior_cost
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import ModelRoutes
from tests.learning.synthetic import NOW, book, many

ROUTES, PRICES = ModelRoutes(), PriceTable()
HAIKU, SONNET, OPUS = (ROUTES.resolve(a) for a in ("haiku", "sonnet", "opus"))
MODELS = ["haiku", "sonnet", "opus"]


def options(
    history: ProfileBook,
    *,
    remaining: float | None = None,
    failed: frozenset[str] = frozenset(),
    threshold: float = 0.8,
) -> list[ModelOption]:
    return model_options(
        history,
        "developer",
        "feature",
        MODELS,
        routes=ROUTES,
        prices=PRICES,
        threshold=threshold,
        now=NOW,
        remaining_usd=remaining,
        failed_here=failed,
    )


def decide(
    opts: list[ModelOption],
    *,
    rng: random.Random | None = None,
    share: float = 0.1,
    history: list[bool] | None = None,
    default: str = SONNET,
) -> ModelDecision:
    return choose_model(
        opts,
        default=default,
        threshold=0.8,
        explore_share=share,
        rng=rng,
        explored_history=history or [],
    )


def test_options_are_ordered_cheapest_first_by_the_price_table() -> None:
    opts = options(ProfileBook())
    assert [o.model_id for o in opts] == [HAIKU, SONNET, OPUS]
    costs = [prior_cost("feature", o.model_id, PRICES) for o in opts]
    assert costs == sorted(costs)


def test_without_history_the_agents_default_runs() -> None:
    d = decide(options(ProfileBook()), rng=random.Random(1))
    assert (d.chosen.model_id, d.explored) == (SONNET, False)
    assert d.rule.startswith("no history")


def test_the_cheapest_model_clearing_the_threshold_is_chosen() -> None:
    history = book(
        many(12, model=HAIKU, ok=True, cost=0.02),
        many(12, model=SONNET, ok=True, cost=0.06),
        many(12, model=OPUS, ok=True, cost=0.10),
    )
    d = decide(options(history))
    assert d.chosen.model_id == HAIKU
    assert d.rule == "the cheapest model clearing the success threshold"
    assert d.chosen.expected == pytest.approx(13 / 14)


def test_a_failing_cheap_model_is_passed_over_and_dropped() -> None:
    history = book(many(4, model=HAIKU, ok=False, cost=0.02), many(10, model=SONNET, ok=True))
    opts = options(history)
    haiku = next(o for o in opts if o.model_id == HAIKU)
    assert haiku.dropped and haiku.expected == pytest.approx(1 / 6)
    assert wilson_upper(0.0, 4) < 0.8
    d = decide(opts)
    assert d.chosen.model_id == SONNET
    # exploration never brings a dropped model back, however often it is asked
    for seed in range(300):
        got = decide(opts, rng=random.Random(seed), share=0.5)
        assert got.chosen.model_id != HAIKU


def test_a_model_is_dropped_only_after_enough_executions() -> None:
    assert not dropped(0.0, 2, 0.8)  # two failures are not enough to give up
    assert dropped(0.0, 3, 0.8)
    assert not dropped(0.9, 30, 0.8)
    assert not dropped(None, 0, 0.8)


def test_when_nothing_clears_the_threshold_the_best_expected_success_runs() -> None:
    history = book(
        many(3, model=HAIKU, ok=False),
        many(5, model=SONNET, ok=True),
        many(5, model=SONNET, ok=False),
        many(8, model=OPUS, ok=True),
        many(4, model=OPUS, ok=False),
    )
    d = decide(options(history))
    assert d.chosen.model_id == OPUS
    assert d.rule.startswith("none clears")


def test_a_retry_escalates_past_the_model_that_failed_in_the_stage() -> None:
    history = book(many(12, model=HAIKU, ok=True), many(12, model=SONNET, ok=True))
    d = decide(options(history, failed=frozenset({HAIKU})))
    assert d.chosen.model_id == SONNET
    # without any history, a failed default goes one model up
    first = decide(options(ProfileBook(), failed=frozenset({SONNET})))
    assert first.chosen.model_id == OPUS
    assert "next model up" in first.rule


def test_exploration_tries_a_cheaper_model_at_a_bounded_share() -> None:
    # sonnet is proven; haiku, three times cheaper, has little history: it gets a chance
    history = book(
        many(20, model=SONNET, ok=True, cost=0.06), many(1, model=HAIKU, ok=True, cost=0.02)
    )
    opts = options(history)
    assert decide(opts).chosen.model_id == SONNET
    rng = random.Random(7)
    explored: list[bool] = []
    for _ in range(2000):
        d = decide(opts, rng=rng, share=0.1, history=explored)
        explored.append(d.explored)
        if d.explored:
            assert d.rule == "explore" and d.chosen.model_id != SONNET
            assert d.draws  # every arm's draw is shown
    share = sum(explored) / len(explored)
    assert 0.02 < share <= 0.1  # it happens, and never above the bound
    # the bound holds over every window the share is measured on
    for end in range(SHARE_WINDOW, len(explored)):
        window = explored[end - SHARE_WINDOW : end]
        assert sum(window) / SHARE_WINDOW <= 0.1 + 1 / SHARE_WINDOW


def test_no_exploration_once_the_recent_share_is_reached() -> None:
    history = book(many(20, model=SONNET, ok=True), many(1, model=HAIKU, ok=True))
    full = [True] * 5 + [False] * 45  # 10% of the window explored already
    for seed in range(200):
        d = decide(options(history), rng=random.Random(seed), share=0.1, history=full)
        assert not d.explored
        assert d.explored_share == pytest.approx(0.1)


def test_exploration_never_picks_a_model_whose_worst_case_breaks_the_budget() -> None:
    history = book(
        many(20, model=OPUS, ok=True, cost=0.50),  # proven, but a run has little money left
        many(1, model=SONNET, ok=True, cost=0.30),
        many(3, model=HAIKU, ok=True, cost=0.02),
    )
    remaining = 0.2
    opts = options(history, remaining=remaining)
    fits = {o.model_id: o.fits for o in opts}
    assert fits == {HAIKU: True, SONNET: False, OPUS: False}
    haiku = next(o for o in opts if o.model_id == HAIKU)
    assert haiku.worst_usd == pytest.approx(1.5 * 0.02)  # 1.5 x the largest attempt seen
    sonnet = next(o for o in opts if o.model_id == SONNET)  # too little history: the prior
    assert sonnet.worst_usd == pytest.approx(2 * 2.5 * (prior_cost("feature", SONNET, PRICES) or 0))
    for seed in range(500):
        d = decide(opts, rng=random.Random(seed), share=0.5)
        assert d.chosen.worst_usd is not None and d.chosen.worst_usd <= remaining


def test_an_uncapped_run_lets_every_model_fit() -> None:
    assert all(o.fits for o in options(book(many(5, model=OPUS, cost=100.0))))


def test_an_unpriced_model_without_history_never_fits_a_budget() -> None:
    routes = ModelRoutes(aliases={"mystery": "some-unpriced-model", **ROUTES.aliases})
    opts = model_options(
        ProfileBook(),
        "developer",
        "feature",
        ["mystery", "sonnet"],
        routes=routes,
        prices=PRICES,
        threshold=0.8,
        now=NOW,
        remaining_usd=100.0,
    )
    mystery = next(o for o in opts if o.name == "mystery")
    assert (mystery.worst_usd, mystery.fits) == (None, False)
    assert opts[-1] is mystery  # no price: it sorts last
