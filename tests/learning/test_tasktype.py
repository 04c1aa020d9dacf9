"""The task-type classifier: roles from agents, the task text refining implementation work, and
what a template or stage states winning over both."""

from __future__ import annotations

import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.learning.tasktype import TASK_TYPES, classify, task_type_of
from stageflow.workflows.spec import WorkflowSpec


@pytest.mark.parametrize(
    ("agent", "task", "expected"),
    [
        ("architect", "Fix the crash on empty CSV files", "design"),
        ("tester", "Fix the crash on empty CSV files", "test"),
        ("reviewer", "Add CSV export", "review"),
        ("documenter", "Add CSV export", "docs"),
        ("security-auditor", "Add CSV export", "security"),
        ("devops", "Add CSV export", "release"),
        ("investigator", "The parser is slow", "investigate"),
        ("developer", "Fix the crash on empty CSV files", "bugfix"),
        ("developer", "Add CSV export to the report command", "feature"),
        ("developer", "Refactor the loader and rename its helpers", "refactor"),
        ("developer", "Make the import faster: it is slow on big files", "performance"),
        ("developer", "Patch the SQL injection in the search endpoint", "security"),
        ("developer", "Document the new options in the README", "docs"),
        ("frontend-developer", "Broken layout on narrow screens", "bugfix"),
        # the most hits wins: two performance words against one bug word
        ("developer", "Speed up the slow export; a bug report says so", "performance"),
        # words match at their start only: "prefix" is not "fix", "debugger" not "bug"
        ("developer", "Add a prefix option to the debugger view", "feature"),
    ],
)
def test_built_in_roles_and_the_task_text(agent: str, task: str, expected: str) -> None:
    assert classify(agent, task) == expected
    assert expected in TASK_TYPES


@pytest.mark.parametrize(
    ("name", "description", "expected"),
    [
        ("backend-developer", "Builds server code", "implement"),
        ("qa-engineer", "Runs the test plan", "test"),
        ("api-designer", "Plans the API", "design"),
        ("copywriter", "A technical writer for the docs", "docs"),
        ("helper", "Does whatever is asked", "implement"),
    ],
)
def test_an_unknown_agent_gets_the_role_its_words_name(
    name: str, description: str, expected: str
) -> None:
    agent = AgentDefinition(name=name, description=description, system_prompt="x")
    got = classify(name, "Fix the crash", agent)
    assert got == ("bugfix" if expected == "implement" else expected)


def test_a_stage_or_template_that_states_its_task_type_wins() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "t",
            "task_type": "migration",
            "stages": [
                {"id": "a", "agent": "developer"},
                {"id": "b", "agent": "developer", "task_type": "docs"},
            ],
        }
    )
    a, b = spec.stages
    assert task_type_of(spec, a, "developer", "Fix the crash") == "migration"
    assert task_type_of(spec, b, "developer", "Fix the crash") == "docs"
    bare = WorkflowSpec.model_validate({"name": "t", "stages": [{"id": "a", "agent": "developer"}]})
    assert task_type_of(bare, bare.stages[0], "developer", "Fix the crash") == "bugfix"
