"""Hostile plans: what a model (or a runner that skipped the check) may hand back, and what
the one plan check makes of it. Every refusal is bounded (a few problems, values quoted back
cut short), however large the plan; nothing past the limits is accepted."""

from __future__ import annotations

from typing import Any

from stageflow.workflows.plan import (
    HARD_ITEMS,
    MAX_PROBLEMS,
    MAX_SHOWN,
    PlanItem,
    PlanLimits,
    check_plan,
)

LIMITS = PlanLimits(
    max_items=6, agents=("developer", "tester"), default_agent="developer", item_usd=1.0
)
# the whole refusal the model reads stays small whatever the plan
MAX_REFUSAL = MAX_PROBLEMS * 400


def item(item_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "title": f"do {item_id}", "depends_on": list(deps), **extra}


def refused(raw: object, limits: PlanLimits = LIMITS, **kw: Any) -> list[str]:
    found = check_plan(raw, limits, **kw)
    assert isinstance(found, list), f"accepted: {found}"
    assert len(found) <= MAX_PROBLEMS
    assert sum(len(p) for p in found) <= MAX_REFUSAL, sum(len(p) for p in found)
    return found


def test_thousands_of_items_are_refused_in_one_short_problem() -> None:
    raw = {"items": [item(f"t{n}", "missing") for n in range(5000)]}
    assert refused(raw) == [
        "the plan has 5000 items; this stage allows at most 6 (max_items): merge related items"
    ]


def test_many_broken_items_under_the_hard_ceiling_are_counted_not_all_listed() -> None:
    raw = {"items": [item(f"t{n}", "missing") for n in range(HARD_ITEMS)]}
    got = refused(raw)
    assert got[0].startswith(f"the plan has {HARD_ITEMS} items")
    assert got[-1].startswith("... and ") and "more problem(s)" in got[-1]
    # the known ids are listed once, cut short, not the whole plan in every problem
    assert "and 188 more" in got[1]


def test_a_huge_id_is_refused_and_quoted_back_cut_short() -> None:
    got = refused({"items": [{"id": "t" * 1_000_000, "title": "huge"}]})
    assert len(got) == 1 and "must be a short identifier" in got[0]
    assert len(got[0]) < 200 + MAX_SHOWN


def test_path_like_and_dotted_ids_are_refused() -> None:
    # a sub-stage id is <stage>.<item id>: an item id must not reach the filesystem or the
    # stage namespace (a dot would make 'execute.a.b' look like another stage's item)
    for bad in ("../../etc", "a/b", "a.b", "execute.t1", "", " t1", "t1\n", "1t", "t-1"):
        got = refused({"items": [item(bad)]})
        assert any("must be a short identifier" in p for p in got), (bad, got)


def test_duplicate_ids_are_refused_each_named_once() -> None:
    got = refused({"items": [item("t1"), item("t1"), item("t2"), item("t2", "t1")]})
    assert "duplicate item id 't1' (items[0] and items[1])" in got
    assert "duplicate item id 't2' (items[2] and items[3])" in got


def test_an_agent_outside_the_allowed_list_is_refused_whatever_its_size() -> None:
    for agent in ("architect", "x" * 100_000, 7, ["developer"]):
        got = refused({"items": [item("t1", agent=agent)]})
        assert any("agent" in p and "is not allowed; allowed agents: developer, tester" in p
                   for p in got), got  # fmt: skip


def test_a_model_outside_the_allowed_list_is_refused() -> None:
    # an id the price table may not know would cost nothing against the caps: only the
    # template's models (aliases by default) are accepted
    for model in ("claude-opus-4-1-20250805", "gpt-5", "x" * 10_000, 3):
        got = refused({"items": [item("t1", model=model)]})
        assert any("is not allowed; allowed models: opus, sonnet, haiku" in p for p in got), got
    only_haiku = LIMITS.model_copy(update={"models": ("haiku",)})
    assert "allowed models: haiku" in refused({"items": [item("t1", model="opus")]}, only_haiku)[0]
    ok = check_plan({"items": [item("t1", model="Haiku")]}, only_haiku)
    assert isinstance(ok, tuple) and ok[0].model == "Haiku"


def test_an_affordable_plan_of_expensive_items_is_refused_past_the_budget_left() -> None:
    raw = {"items": [item(f"t{n}") for n in range(5)]}
    got = refused(raw, remaining_usd=3.5)
    assert got == [
        "the plan's 5 items at $1.00 each need $5.00, but the run has $3.50 left: plan at most "
        "3 item(s), or the run needs a higher budget"
    ]
    assert isinstance(check_plan(raw, LIMITS, remaining_usd=5.0), tuple)


def test_a_deep_chain_is_accepted_up_to_max_items_and_a_long_cycle_is_found() -> None:
    chain = {"items": [item("t0"), *[item(f"t{n}", f"t{n - 1}") for n in range(1, 6)]]}
    ok = check_plan(chain, LIMITS)
    assert isinstance(ok, tuple) and [i.id for i in ok] == [f"t{n}" for n in range(6)]
    wide = LIMITS.model_copy(update={"max_items": 50})
    ring = {"items": [item(f"t{n}", f"t{(n + 1) % 50}") for n in range(50)]}
    [cycle] = refused(ring, wide)
    assert cycle.startswith("dependency cycle: t0 -> t1 -> t2") and cycle.count("->") == 50


def test_many_unknown_fields_and_dependencies_are_one_bounded_problem_each() -> None:
    fields = {f"k{n}": 1 for n in range(10_000)}
    got = refused({"items": [item("t1", **fields)], **fields})
    assert len(got) == 2 and all("and 9988 more" in p for p in got)
    deps = [f"u{n}" for n in range(100_000)]
    got = refused({"items": [{"id": "t1", "title": "x", "depends_on": deps}]})
    assert got == ["items[0] (t1).depends_on has 100000 entries; at most 50"]


def test_values_of_the_wrong_type_are_refused_not_crashed_on() -> None:
    for raw in (
        None,
        [],
        "items",
        {"items": None},
        {"items": {"t1": {}}},
        {"items": [None, 1, "t1", []]},
        {"items": [{"id": {"nested": "x"}, "title": ["a"]}]},
        {"items": [item("t1", files="src/"), item("t2", acceptance=[1, 2])]},
        {"items": [item("t1", depends_on=[None])]},
    ):
        assert refused(raw), raw


def test_what_passes_is_only_validated_items() -> None:
    ok = check_plan({"items": [item("t1", files=["./src/a.py", "./src/a.py"])]}, LIMITS)
    assert isinstance(ok, tuple) and all(isinstance(i, PlanItem) for i in ok)
    assert ok[0].files == ["./src/a.py"]  # duplicates dropped


def test_a_plan_of_maximal_items_is_refused_past_its_total_size() -> None:
    from stageflow.workflows.plan import MAX_DESCRIPTION, MAX_ENTRY, MAX_LIST, MAX_PLAN_CHARS

    wide = LIMITS.model_copy(update={"max_items": 50})
    fat = {
        "description": "d" * MAX_DESCRIPTION,
        "acceptance": ["a" * MAX_ENTRY] * MAX_LIST,
    }
    got = refused({"items": [item(f"t{n}", **fat) for n in range(50)]}, wide)
    assert len(got) == 1 and f"characters of text; at most {MAX_PLAN_CHARS}" in got[0]
    assert isinstance(check_plan({"items": [item("t1", **fat)]}, wide), tuple)
