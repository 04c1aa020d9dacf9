"""The scoring formula on synthetic histories with known answers: recency weights, confidence,
the 0.3 / 0.5 / 0.2 mix, and the ranking of candidates built on them."""

from __future__ import annotations

import pytest

from stageflow.learning import scoring
from stageflow.learning.choose import pick_agent, rank_agents
from tests.learning.synthetic import DAY, NOW, book, many, sample


def test_the_last_seven_days_weigh_three_times_an_older_execution_of_the_same_age() -> None:
    assert scoring.recency_weight(0) == 3.0
    week = 7 * DAY
    decay = 2 ** (-7 / 30)
    assert scoring.recency_weight(week) == pytest.approx(3 * decay)
    # just past the week: a third of what it weighed a moment before
    assert scoring.recency_weight(week + 1) == pytest.approx(decay, rel=1e-6)
    assert scoring.recency_weight(week) / scoring.recency_weight(week + 1) == pytest.approx(3.0)


def test_weights_halve_every_thirty_days() -> None:
    assert scoring.recency_weight(30 * DAY) == pytest.approx(0.5)
    assert scoring.recency_weight(60 * DAY) == pytest.approx(0.25)
    assert scoring.recency_weight(90 * DAY) == pytest.approx(0.125)
    assert scoring.recency_weight(-5 * DAY) == 3.0  # a clock step back counts as new


def test_expertise_is_the_recency_weighted_success_rate() -> None:
    # two successes today (weight 3 each), two failures 30 days ago (weight 0.5 each)
    history = [(NOW, True), (NOW, True), (NOW - 30 * DAY, False), (NOW - 30 * DAY, False)]
    assert scoring.expertise(history, NOW) == pytest.approx(6 / 7)
    # the same verdicts the other way round: old successes count for little
    flipped = [(NOW, False), (NOW, False), (NOW - 30 * DAY, True), (NOW - 30 * DAY, True)]
    assert scoring.expertise(flipped, NOW) == pytest.approx(1 / 7)
    assert scoring.expertise([], NOW) is None


def test_confidence_is_executions_over_twenty_capped_at_one() -> None:
    assert [scoring.confidence(n) for n in (0, 1, 10, 14, 20, 40)] == [
        0.0,
        0.05,
        0.5,
        0.7,
        1.0,
        1.0,
    ]


def test_the_score_mixes_base_expertise_and_confidence_three_five_two() -> None:
    assert scoring.score(1.0, 0.8, 0.5) == pytest.approx(0.3 + 0.4 + 0.1)
    assert scoring.score(0.5, 1.0, 1.0) == pytest.approx(0.15 + 0.5 + 0.2)
    assert scoring.score(0.0, 0.0, 0.0) == 0.0
    # no executions: the prior expertise 0.5, confidence 0
    assert scoring.score(1.0, None, 0.0) == pytest.approx(0.3 + 0.25)


def test_base_is_availability_over_one_plus_load() -> None:
    assert scoring.base(available=True, load=0) == 1.0
    assert scoring.base(available=True, load=1) == 0.5
    assert scoring.base(available=True, load=3) == 0.25
    assert scoring.base(available=False, load=0) == 0.0


def test_ranking_shows_every_part_and_the_expert_wins() -> None:
    history = book(
        many(20, agent="backend-developer", ok=True),  # 20 recent successes
        many(3, agent="developer", ok=True),
        many(2, agent="developer", ok=False),  # 5 executions, 60%
    )
    scores = rank_agents(
        history,
        ["developer", "backend-developer"],
        {"developer": "feature", "backend-developer": "feature"},
        now=NOW,
    )
    dev, backend = scores
    assert (dev.parts.base, dev.parts.expertise, dev.parts.confidence) == (1.0, 0.6, 0.25)
    assert dev.score == pytest.approx(0.3 + 0.3 + 0.05)
    assert (backend.parts.expertise, backend.parts.confidence, backend.score) == (1.0, 1.0, 1.0)
    chosen, rule = pick_agent(scores)
    assert (chosen.agent, rule) == ("backend-developer", "the highest score")
    assert backend.record() == {
        "agent": "backend-developer",
        "score": 1.0,
        "base": 1.0,
        "expertise": 1.0,
        "confidence": 1.0,
        "executions": 20,
    }


def test_load_lowers_the_base_and_can_change_the_choice() -> None:
    history = book(many(20, agent="a", ok=True), many(20, agent="b", ok=True))
    scores = rank_agents(
        history, ["a", "b"], {"a": "feature", "b": "feature"}, now=NOW, loads={"a": 2}
    )
    assert [round(s.score, 4) for s in scores] == [round(0.3 / 3 + 0.5 + 0.2, 4), 1.0]
    assert pick_agent(scores)[0].agent == "b"


def test_without_history_the_first_candidate_runs() -> None:
    history = book([sample(agent="other", task_type="docs")])  # another agent, another type
    scores = rank_agents(history, ["b", "a"], {"a": "feature", "b": "feature"}, now=NOW)
    chosen, rule = pick_agent(scores)
    assert chosen.agent == "b"
    assert rule.startswith("no history")
    assert all(s.parts.expertise is None and s.parts.executions == 0 for s in scores)


def test_recent_failures_outweigh_older_successes_in_the_ranking() -> None:
    history = book(
        many(10, agent="a", ok=True, age_days=60),  # good, long ago
        many(4, agent="a", ok=False, age_days=1),  # failing this week
        many(6, agent="b", ok=True, age_days=3),
        many(2, agent="b", ok=False, age_days=3),
    )
    a, b = rank_agents(history, ["a", "b"], {"a": "feature", "b": "feature"}, now=NOW)
    wa_ok, wa_bad = 10 * 0.25, 4 * 3 * 2 ** (-1 / 30)
    assert a.parts.expertise == pytest.approx(wa_ok / (wa_ok + wa_bad))
    assert b.parts.expertise == pytest.approx(0.75)
    assert pick_agent([a, b])[0].agent == "b"
