"""``submit_result`` of a plan stage: the plan's schema is declared in the tool's input schema,
and a submission's plan is checked (the refusal numbers every problem for the model)."""

from __future__ import annotations

from typing import Any

from stageflow.subagents.submit import Submission, check_submission, submit_tool_definition
from stageflow.workflows.plan import PlanLimits, check_plan

LIMITS = PlanLimits(max_items=2, agents=("developer",), default_agent="developer")


def check(raw: object) -> Any:
    return check_plan(raw, LIMITS)


def args(**extra: Any) -> dict[str, Any]:
    return {"status": "passed", "summary": "planned", "artifacts": {}, **extra}


def test_a_plan_stage_declares_the_plan_schema_and_others_do_not() -> None:
    plain = submit_tool_definition(())
    assert "plan" not in plain["input_schema"]["properties"]
    planned = submit_tool_definition((), LIMITS)
    schema = planned["input_schema"]
    assert "plan" in schema["required"]
    assert schema["properties"]["plan"]["properties"]["items"]["maxItems"] == 2
    assert "plan stage" in planned["description"]


def test_a_valid_plan_is_returned_checked() -> None:
    got = check_submission(args(plan={"items": [{"id": "t1", "title": "a"}]}), [], check)
    assert isinstance(got, Submission)
    assert got.plan == {
        "items": [
            {
                "id": "t1",
                "title": "a",
                "description": "",
                "depends_on": [],
                "files": [],
                "acceptance": [],
                "agent": None,
                "model": None,
            }
        ]
    }


def test_bad_or_missing_plans_are_refused_with_every_problem_numbered() -> None:
    raw = {"items": [{"id": "t1", "title": "a", "depends_on": ["t2"]}, {"id": "t1", "title": "b"}]}
    got = check_submission(args(plan=raw), [], check)
    assert isinstance(got, str)
    assert got.startswith("submit_result refused: the plan was refused: (1) duplicate item id")
    assert "(2) item 't1' depends on unknown item 't2'; the items are t1" in got
    assert got.endswith("call submit_result again.")
    missing = check_submission(args(), [], check)
    assert isinstance(missing, str) and "plan is required" in missing
    # a stage that cannot plan says so without one; other stages do not take a plan
    assert isinstance(check_submission(args(status="failed"), [], check), Submission)
    other = check_submission(args(plan={"items": []}), [])
    assert isinstance(other, str) and "unknown field(s): plan" in other
