"""Plans: the one check every plan passes (runner and engine alike), its schema, the specs
derived from a plan item or an escalation, and the template checks of the run-time keys."""

from __future__ import annotations

from typing import Any

import pytest

from stageflow.errors import SpecErrors
from stageflow.workflows.derived import (
    decision_stage,
    feedback_findings,
    findings,
    item_stage,
    rework_feedback,
)
from stageflow.workflows.loader import load_template_text
from stageflow.workflows.plan import (
    PlanItem,
    PlanLimits,
    check_plan,
    files_overlap,
    plan_schema,
    render_plan,
)
from stageflow.workflows.spec import StageSpec

LIMITS = PlanLimits(
    max_items=4, agents=("developer", "tester"), default_agent="developer", item_usd=1.0
)


def item(item_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "title": f"do {item_id}",
        "description": "",
        "depends_on": list(deps),
        "files": [],
        "acceptance": [],
        **extra,
    }


def problems(raw: object, **kw: Any) -> list[str]:
    found = check_plan(raw, LIMITS, **kw)
    assert isinstance(found, list), found
    return found


def test_a_valid_plan_comes_back_as_items_in_order() -> None:
    plan = {"items": [item("t1"), item("t2"), item("t3", "t1", "t2", agent="tester")]}
    items = check_plan(plan, LIMITS, remaining_usd=10.0)
    assert isinstance(items, tuple)
    assert [(i.id, i.depends_on, i.agent) for i in items] == [
        ("t1", [], None),
        ("t2", [], None),
        ("t3", ["t1", "t2"], "tester"),
    ]


def test_a_cycle_is_refused_naming_it() -> None:
    got = problems({"items": [item("t1", "t3"), item("t2", "t1"), item("t3", "t2")]})
    assert got == ["dependency cycle: t1 -> t3 -> t2 -> t1; items must form a DAG"]


def test_an_unknown_dependency_and_a_self_dependency_are_refused() -> None:
    got = problems({"items": [item("t1", "t9"), item("t2", "t2")]})
    assert "item 't1' depends on unknown item 't9'; the items are t1, t2" in got
    assert "item 't2' depends on itself" in got


def test_too_many_items_duplicates_and_agents_are_refused_together() -> None:
    raw = {"items": [item(f"t{n}") for n in range(5)] + [item("t1", agent="pentester")]}
    got = problems(raw)
    assert got[0] == (
        "the plan has 6 items; this stage allows at most 4 (max_items): merge related items"
    )
    assert (
        "items[5] (t1).agent 'pentester' is not allowed; allowed agents: developer, tester" in got
    )
    assert "duplicate item id 't1' (items[1] and items[5])" in got


def test_the_budget_check_says_how_many_items_fit() -> None:
    raw = {"items": [item("t1"), item("t2"), item("t3")]}
    assert problems(raw, remaining_usd=2.5) == [
        "the plan's 3 items at $1.00 each need $3.00, but the run has $2.50 left: plan at "
        "most 2 item(s), or the run needs a higher budget"
    ]
    assert isinstance(check_plan(raw, LIMITS, remaining_usd=3.0), tuple)
    assert isinstance(check_plan(raw, LIMITS, remaining_usd=None), tuple)  # no run budget


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "the plan must be an object with 'items', a list of work items (got null)"),
        ({"items": "t1"}, "the plan must be an object with 'items', a list of work items (got a"),
        ({"items": []}, "the plan has no items; a plan needs at least one work item"),
        ({"items": [5]}, "items[0] must be an object (got a number)"),
        ({"items": [item("1x")]}, "items[0].id must be a short identifier such as 't1'"),
        ({"items": [{"id": "t1"}]}, "items[0] (t1).title is required"),
        ({"items": [item("t1", files=["../etc/passwd"])]}, "must be a path inside the project"),
        ({"items": [item("t1", files=["/abs"])]}, "must be a path inside the project"),
        ({"items": [item("t1", depends_on="t2")]}, "depends_on must be a list of strings"),
        ({"items": [item("t1", owner="me")]}, "unknown field(s) owner"),
        ({"items": [item("t1", title="x" * 201)]}, "title is 201 characters; at most 200"),
        ({"items": [item("t1")], "notes": "x"}, "unknown plan field(s) notes"),
        ({"items": [item("t1", model="rm -rf /")]}, "model 'rm -rf /' is not allowed"),
    ],
)
def test_malformed_plans_are_refused_with_a_clear_message(raw: object, expected: str) -> None:
    got = problems(raw)
    assert any(expected in p for p in got), got


def test_the_schema_offered_to_the_model_declares_the_limits() -> None:
    schema = plan_schema(LIMITS)
    items = schema["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, 4)
    assert items["items"]["properties"]["agent"]["enum"] == ["developer", "tester"]
    assert items["items"]["properties"]["model"]["enum"] == ["opus", "sonnet", "haiku"]
    assert set(items["items"]["required"]) == {
        "id",
        "title",
        "description",
        "depends_on",
        "files",
        "acceptance",
    }
    assert items["items"]["additionalProperties"] is False


def test_render_plan_lists_every_item() -> None:
    items = check_plan({"items": [item("t1", files=["a.py"], acceptance=["works"])]}, LIMITS)
    assert isinstance(items, tuple)
    text = render_plan(items)
    assert "| t1 | do t1 | - | - | `a.py` |" in text
    assert "## t1: do t1" in text and "- works" in text


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (["a.py"], ["a.py"], True),
        (["./src/a.py"], ["src/a.py"], True),
        (["src/"], ["src/a.py"], True),
        (["src/*.py"], ["src/a.py"], True),
        (["src/a.py"], ["src/b.py"], False),
        (["src/a.py"], ["src/a.pyc"], False),
        ([], ["a.py"], False),
        (["."], ["a.py"], True),
    ],
)
def test_files_overlap(a: list[str], b: list[str], overlap: bool) -> None:
    assert files_overlap(a, b) is overlap
    assert files_overlap(b, a) is overlap


PARENT = StageSpec(
    id="execute",
    agent="developer",
    description="Do one item.",
    depends_on=["plan"],
    needs=["plan.plan"],
    produces=["summary"],
    budget_usd=2.0,
    timeout=600,
)


def test_an_item_stage_keeps_the_parents_rules_and_takes_the_items_goal() -> None:
    it = PlanItem(
        id="t3",
        title="Wire it in",
        description="Connect the parts.",
        depends_on=["t1"],
        files=["a.py"],
        acceptance=["it works"],
        agent="tester",
        model="haiku",
    )
    spec = item_stage(PARENT, it)
    assert spec.id == "execute.t3"
    assert (spec.agent, spec.model, spec.files) == ("tester", "haiku", ["a.py"])
    assert spec.depends_on == ["execute.t1"]
    assert (spec.needs, spec.produces, spec.budget_usd, spec.timeout) == (
        ["plan.plan"],
        ["summary"],
        2.0,
        600,
    )
    assert spec.for_each is None
    assert "Wire it in" in spec.description and "- it works" in spec.description
    assert item_stage(PARENT, it) == spec  # a function of the parent and the item alone


def test_a_decision_stage_reads_what_the_stage_read_and_produced_and_tolerates_failure() -> None:
    review = StageSpec(id="review", agent="reviewer", needs=["impl.patch"], produces=["review"])
    spec = decision_stage(
        review,
        agent="decision-maker",
        round_=1,
        kind="rework",
        reason="out of rounds",
        open_findings="- [t1] broken",
    )
    assert spec.id == "review.decision1"
    assert spec.needs == ["impl.patch", "review.review"]
    assert spec.produces == ["decision"]
    assert spec.on_failure.then == "continue"
    assert "`ruling`" in spec.description and "- [t1] broken" in spec.description


def test_findings_are_read_in_every_documented_shape() -> None:
    assert findings({"findings": {"t1": ["a", "b"], "": "c"}}) == {"t1": ["a", "b"], "": ["c"]}
    assert findings({"findings": [{"item": "t2", "finding": "x"}, "general"]}) == {
        "t2": ["x"],
        "": ["general"],
    }
    assert findings({"findings": 3}) == {}
    assert feedback_findings("t2: header missing\nplease also lint\nexecute.t1: test it") == {
        "t2": ["header missing"],
        "t1": ["test it"],
        "": ["please also lint"],
    }


def test_rework_feedback_is_bounded() -> None:
    text = rework_feedback("audit", 1, 2, "two problems", ["x" * 500] * 40)
    assert len(text) <= 6000 and text.endswith("[... findings cut to fit]")
    assert text.startswith("Stage `audit` requested changes (rework round 1 of 2).")


# -- template checks -------------------------------------------------------------------------

AGENTS = ["coordinator", "developer", "auditor", "decision-maker"]


def template(stages: str) -> str:
    return f"name: t\nstages:\n{stages}"


def refused(text: str) -> list[str]:
    with pytest.raises(SpecErrors) as caught:
        load_template_text(text, source="t.yaml", agent_names=AGENTS)
    return [f"{p.line}: {p.path}: {p.message}" for p in caught.value.problems]


GOOD = """\
  - {id: plan, agent: coordinator, plan: {max_items: 3, agents: [developer]}}
  - {id: execute, agent: developer, for_each: plan, depends_on: [plan], produces: [summary]}
  - id: audit
    agent: auditor
    depends_on: [execute]
    needs: [plan.plan, execute.summary]
    on_changes_requested: {rework: execute, max: 2}
    escalate: decision-maker
"""


def test_a_plan_template_loads_and_the_plan_stage_produces_its_plan() -> None:
    spec = load_template_text(template(GOOD), source="t.yaml", agent_names=AGENTS)
    assert spec.stage("plan").produces == ["plan"]
    assert spec.stage("plan").required_artifacts == []
    esc = spec.stage("audit").escalate
    assert esc is not None and (esc.agent, esc.max) == ("decision-maker", 1)


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            "  - {id: a, agent: developer, for_each: nope}\n",
            "stages[0].for_each: for_each names unknown stage 'nope'",
        ),
        (
            "  - {id: p, agent: developer}\n  - {id: a, agent: developer, for_each: p, "
            "depends_on: [p]}\n",
            "for_each stage 'p' is not a plan stage",
        ),
        (
            "  - {id: p, agent: coordinator, plan: true}\n  - {id: a, agent: developer, "
            "for_each: p}\n",
            "for_each stage 'p' must be upstream (add it to depends_on)",
        ),
        (
            "  - {id: p, agent: coordinator, plan: {agents: [wizard]}}\n",
            "stages[0].plan.agents[0]: unknown agent 'wizard'",
        ),
        (
            "  - {id: a, agent: developer}\n  - {id: b, agent: auditor, on_changes_requested: "
            "{rework: a}}\n",
            "rework stage 'a' is not upstream of this stage",
        ),
        (
            "  - {id: a, agent: developer, on_changes_requested: {rework: a}}\n",
            "rework names this stage itself",
        ),
        (
            "  - {id: a, agent: developer}\n  - {id: p, agent: coordinator, plan: true, "
            "depends_on: [a]}\n  - {id: x, agent: developer, for_each: p, depends_on: [p]}\n"
            "  - {id: r, agent: auditor, depends_on: [x], on_changes_requested: {rework: a}}\n",
            "rework of 'a' would rerun plan stage 'p' after its plan was expanded",
        ),
        (
            "  - {id: a, agent: developer, escalate: decision-maker}\n",
            "escalate applies to a false gate or to used-up rework rounds",
        ),
        (
            "  - {id: a, agent: developer, files: [../x]}\n",
            "stages[0].files[0]: files entry '../x' must be a path inside the project",
        ),
        (
            "  - {id: a, agent: developer, on_changes_requested: {rework: b, mx: 1}}\n",
            "unknown field 'mx' (did you mean 'max'?)",
        ),
    ],
)
def test_run_time_keys_are_checked_with_line_and_path(stages: str, expected: str) -> None:
    got = refused(template(stages))
    assert any(expected in p for p in got), got
