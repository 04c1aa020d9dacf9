"""The offline runner's building blocks: the seeded dice and the small text helpers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stageflow.subagents.offline.text import Dice, first_heading, keywords, one_line


@given(st.text(max_size=30), st.integers(-50, 50), st.integers(0, 100))
def test_dice_between_stays_in_bounds_and_repeats_per_seed(seed: str, lo: int, span: int) -> None:
    first = [Dice(seed).between(lo, lo + span) for _ in range(3)]
    assert all(lo <= n <= lo + span for n in first)
    assert len(set(first)) == 1  # a fresh dice with the same seed gives the same number


@given(st.text(max_size=30), st.integers(0, 8))
def test_dice_sample_is_distinct_and_keeps_order(seed: str, k: int) -> None:
    items = list("abcdef")
    chosen = Dice(seed).sample(items, k)
    assert len(chosen) == min(k, len(items))
    assert chosen == sorted(set(chosen))


def test_keywords_skip_common_words_and_fall_back() -> None:
    assert keywords("Add rate limiting to the login endpoint") == ["rate", "limiting", "login"]
    assert keywords("add the") == ["feature"]


def test_first_heading_skips_the_offline_marker_and_meta_line() -> None:
    text = "> [offline] marker\n\n_stage `x`_\n\n# Design: cache layer\n"
    assert first_heading(text) == "Design: cache layer"
    assert first_heading("") == "(empty)"


def test_one_line_flattens_and_shortens() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 100, 10) == "xxxxxxx..."
