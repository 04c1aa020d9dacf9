"""submit_result: the definition the model sees, and what a submission must contain."""

from __future__ import annotations

from typing import Any

import pytest

from stageflow.subagents.submit import Submission, check_submission, submit_tool_definition

PRODUCES = ["deploy_plan", "changelog"]


def args(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "passed",
        "summary": "planned",
        "artifacts": {"deploy_plan": "1. build", "changelog": "- added limits"},
    }
    base.update(overrides)
    return base


def test_definition_names_the_required_artifacts() -> None:
    tool = submit_tool_definition(PRODUCES)

    assert tool["name"] == "submit_result"
    assert "deploy_plan, changelog" in tool["description"]
    schema = tool["input_schema"]
    assert schema["required"] == ["status", "summary", "artifacts"]
    assert schema["properties"]["status"]["enum"] == ["passed", "failed", "changes_requested"]
    artifacts = schema["properties"]["artifacts"]
    assert artifacts["required"] == PRODUCES
    assert set(artifacts["properties"]) == set(PRODUCES)
    assert schema["properties"]["outputs"]["type"] == "object"


def test_definition_without_produces_does_not_require_artifacts() -> None:
    schema = submit_tool_definition([])["input_schema"]

    assert schema["required"] == ["status", "summary"]
    assert "required" not in schema["properties"]["artifacts"]


def test_a_complete_submission_passes() -> None:
    checked = check_submission(args(outputs={"approved": True}), PRODUCES)

    assert checked == Submission(
        status="passed",
        summary="planned",
        artifacts={"deploy_plan": "1. build", "changelog": "- added limits"},
        outputs={"approved": True},
    )


def test_a_missing_artifact_is_named() -> None:
    checked = check_submission(args(artifacts={"deploy_plan": "1. build"}), PRODUCES)

    assert checked == (
        "submit_result refused: missing required artifact(s): changelog. This stage must "
        "produce: deploy_plan, changelog. Fix this and call submit_result again."
    )


def test_an_empty_artifact_is_refused() -> None:
    checked = check_submission(args(artifacts={"deploy_plan": "  \n", "changelog": "x"}), PRODUCES)

    assert isinstance(checked, str)
    assert "empty artifact(s): deploy_plan (write the full text)" in checked


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"status": "done"},
            'status must be one of passed, failed, changes_requested (got "done")',
        ),
        ({"summary": None}, "summary must be a string (got null)"),
        ({"artifacts": ["1. build"]}, "artifacts must be an object of name -> text (got list)"),
        (
            {"artifacts": {"deploy_plan": "1. build", "changelog": 3}},
            "artifact 'changelog' must be a string (got int)",
        ),
        ({"outputs": "approved"}, "outputs must be an object (got str)"),
        ({"changelog": "- x"}, "unknown field(s): changelog (the fields are status, summary"),
    ],
)
def test_wrong_types_and_values_are_explained(overrides: dict[str, Any], problem: str) -> None:
    checked = check_submission(args(**overrides), PRODUCES)

    assert isinstance(checked, str)
    assert checked.startswith("submit_result refused: ")
    assert problem in checked


def test_a_missing_summary_is_refused() -> None:
    given = args()
    del given["summary"]

    checked = check_submission(given, PRODUCES)

    assert isinstance(checked, str)
    assert "summary must be a string (got null)" in checked


def test_every_problem_is_reported_at_once() -> None:
    checked = check_submission(
        {"status": "passed", "summary": 7, "artifacts": {}, "outputs": []}, PRODUCES
    )

    assert checked == (
        "submit_result refused: summary must be a string (got int); outputs must be an object "
        "(got list); missing required artifact(s): deploy_plan, changelog. This stage must "
        "produce: deploy_plan, changelog. Fix this and call submit_result again."
    )


def test_changes_requested_still_needs_the_artifacts() -> None:
    checked = check_submission(args(status="changes_requested", artifacts={}), ["review"])

    assert isinstance(checked, str)
    assert "missing required artifact(s): review" in checked


def test_a_failed_submission_may_leave_artifacts_out() -> None:
    checked = check_submission({"status": "failed", "summary": "no login endpoint"}, PRODUCES)

    assert checked == Submission(status="failed", summary="no login endpoint")


def test_artifacts_the_stage_does_not_declare_are_refused_naming_the_declared_ones() -> None:
    arts = {"deploy_plan": "p", "changelog": "c", "true": "x", "false": "y"}

    checked = check_submission(args(artifacts=arts), PRODUCES)

    assert checked == (
        "submit_result refused: undeclared artifact(s): false, true; this stage produces only: "
        "deploy_plan, changelog (put small values in outputs; a template may allow more with "
        "produces_extra: true). This stage must produce: deploy_plan, changelog. Fix this and "
        "call submit_result again."
    )


def test_a_failed_submission_with_undeclared_artifacts_is_refused_too() -> None:
    checked = check_submission(args(status="failed", artifacts={"notes": "n"}), PRODUCES)
    assert isinstance(checked, str) and "undeclared artifact(s): notes" in checked


def test_extra_artifacts_are_kept_when_the_stage_allows_them() -> None:
    arts = {"deploy_plan": "p", "changelog": "c", "notes": "n"}

    checked = check_submission(args(artifacts=arts), PRODUCES, extra_allowed=True)

    assert isinstance(checked, Submission)
    assert checked.artifacts == arts
