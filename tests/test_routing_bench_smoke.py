"""The routing benchmark still runs, and what it compares is what it says: the static
defaults are the built-in agents' models, the oracle the cheapest model that clears the
threshold, and the learned policy starts from nothing and ends up routing by task type."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "routing.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("routing_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["routing_under_test"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_the_static_defaults_and_the_oracle_are_what_they_claim(bench: ModuleType) -> None:
    defaults = bench.static_defaults()
    assert defaults["design"] == bench.OPUS  # the architect
    assert defaults["feature"] == bench.SONNET  # the developer
    assert defaults["docs"] == bench.HAIKU  # the documenter
    oracle = bench.oracle_routes(0.8, bench.PriceTable())
    assert (oracle["docs"], oracle["feature"], oracle["design"]) == (
        bench.HAIKU,
        bench.SONNET,
        bench.OPUS,
    )


def test_a_small_run_prints_every_policy_against_always_opus(bench: ModuleType) -> None:
    tallies = bench.run(400, 3)
    assert [t.name for t in tallies] == [
        "always-opus",
        "static defaults",
        "always-haiku",
        "oracle",
        "learned (auto)",
    ]
    assert all(t.tasks == 400 and 0 < t.successes <= 400 for t in tallies)
    opus, haiku, learned = tallies[0], tallies[2], tallies[-1]
    assert set(opus.by_model) == {bench.OPUS} and set(haiku.by_model) == {bench.HAIKU}
    assert len(learned.by_model) == 3  # it tried them all
    assert learned.explored <= 0.1 * learned.attempts + 1  # bounded by explore_share
    out = io.StringIO()
    bench.render(tallies, out)
    text = out.getvalue()
    assert "learned vs always-opus:" in text and "cheaper per successful stage" in text
    assert bench.main(["--tasks", "60", "--seeds", "2"]) == 0
