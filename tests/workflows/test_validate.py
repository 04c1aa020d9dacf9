"""Cross-stage checks on specs built in code, and ``validate_files``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stageflow.errors import Problem
from stageflow.workflows.loader import Validation, validate_files
from stageflow.workflows.locations import LineMap, dotted, suggest
from stageflow.workflows.spec import WorkflowSpec
from stageflow.workflows.validate import MAX_CYCLES, check_spec

AGENTS = ["architect", "developer", "tester", "reviewer"]


def spec(*stages: dict[str, Any], **top: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "t", "stages": list(stages), **top})


def test_a_sound_template_has_no_problems() -> None:
    s = spec(
        {"id": "design", "agent": "architect", "produces": ["design"]},
        {
            "id": "build",
            "agent": "developer",
            "depends_on": ["design"],
            "needs": ["design.design"],
            "produces": ["patch"],
            "on_failure": {"rollback": "undo"},
        },
        {
            "id": "test",
            "run": "pytest",
            "depends_on": ["build"],
            "produces": ["report"],
            "when": "inputs.run_tests and design.status == 'succeeded'",
        },
        {
            "id": "review",
            "agent": "reviewer",
            "depends_on": ["test"],
            "needs": ["design.design", "build.patch", "test.report"],
            "gate": "test.outputs.passed == true and inputs.task",
        },
        {"id": "undo", "run": "git checkout ."},
        inputs={"run_tests": "boolean"},
    )
    assert check_spec(spec_with_source(s), agent_names=AGENTS) == []


def spec_with_source(s: WorkflowSpec) -> WorkflowSpec:
    return s.model_copy(update={"source": "code.yaml"})


def test_without_lines_problems_follow_stage_order() -> None:
    s = spec(
        {"id": "a", "agent": "nobody", "needs": ["b.x"]},
        {"id": "b", "agent": "developer", "depends_on": ["zz"]},
    )
    assert check_spec(s, agent_names=AGENTS) == [
        Problem(
            "unknown agent 'nobody'; known agents: architect, developer, reviewer, tester",
            None,
            None,
            "a",
            "stages[0].agent",
        ),
        Problem(
            "needs 'b.x' but stage 'b' is not upstream of this stage (add 'b' to depends_on)",
            None,
            None,
            "a",
            "stages[0].needs[0]",
        ),
        Problem(
            "needs 'b.x' but stage 'b' does not produce 'x' (produces: nothing)",
            None,
            None,
            "a",
            "stages[0].needs[0]",
        ),
        Problem("depends_on unknown stage 'zz'", None, None, "b", "stages[1].depends_on[0]"),
    ]


def test_agent_check_is_skipped_without_agent_names() -> None:
    assert check_spec(spec({"id": "a", "agent": "whoever"})) == []


def test_stage_lines_and_line_map_locate_problems() -> None:
    s = spec({"id": "a", "agent": "tester", "depends_on": ["b"]})
    s = s.model_copy(update={"stages": [s.stages[0].model_copy(update={"line": 7})]})
    [by_stage_line] = check_spec(s)
    assert by_stage_line.line == 7
    lines = LineMap({("stages", 0): 7, ("stages", 0, "depends_on"): 9})
    [by_map] = check_spec(s, lines=lines)
    assert by_map.line == 9  # depends_on[0] falls back to its nearest located ancestor


def test_problems_are_sorted_by_line() -> None:
    s = spec(
        {"id": "a", "agent": "tester", "depends_on": ["x"]},
        {"id": "b", "agent": "tester", "depends_on": ["y"]},
    )
    lines = LineMap({("stages", 0): 20, ("stages", 1): 10})
    assert [p.stage for p in check_spec(s, lines=lines)] == ["b", "a"]


def test_each_distinct_cycle_is_reported_once() -> None:
    s = spec(
        {"id": "a", "agent": "tester", "depends_on": ["b"]},
        {"id": "b", "agent": "tester", "depends_on": ["a", "c"]},
        {"id": "c", "agent": "tester", "depends_on": ["a"]},
    )
    assert [p.message for p in check_spec(s)] == [
        "dependency cycle: a -> b -> a",
        "dependency cycle: a -> b -> c -> a",
    ]


def test_cycle_enumeration_is_capped_on_dense_graphs() -> None:
    ids = [f"s{i}" for i in range(14)]
    s = spec(*({"id": i, "agent": "tester", "depends_on": [d for d in ids if d != i]} for i in ids))
    started = time.monotonic()
    problems = check_spec(s)
    assert len(problems) == MAX_CYCLES
    assert all(p.message.startswith("dependency cycle: s0 -> ") for p in problems)
    assert time.monotonic() - started < 5


def test_conditions_may_read_transitive_upstream_stages_only() -> None:
    s = spec(
        {"id": "a", "agent": "tester", "produces": ["r"]},
        {"id": "b", "agent": "tester", "depends_on": ["a"]},
        {"id": "c", "agent": "tester", "depends_on": ["b"], "when": "a.outputs.ok"},
        {"id": "d", "agent": "tester", "gate": "c.status == 'succeeded'"},
    )
    assert [(p.stage, p.message) for p in check_spec(s)] == [
        (
            "d",
            "gate refers to stage 'c', which is not upstream of this stage (add 'c' to depends_on)",
        ),
    ]


def test_rollback_stage_rules() -> None:
    s = spec(
        {"id": "deploy", "run": "x", "on_failure": {"rollback": "undeploy"}},
        {"id": "undeploy", "run": "y"},
        {"id": "after", "agent": "tester", "depends_on": ["undeploy"]},
        {"id": "self", "run": "z", "on_failure": {"rollback": "self"}},
        {
            "id": "typo",
            "run": "z",
            "on_failure": {"retry": 2, "then": "rollback", "rollback": "undeplyo"},
        },
    )
    assert [(p.stage, p.path, p.message) for p in check_spec(s)] == [
        (
            "after",
            "stages[2].depends_on[0]",
            "depends on 'undeploy', a rollback stage that runs only when 'deploy' fails; nothing "
            "may depend on a rollback stage",
        ),
        ("self", "stages[3].on_failure.rollback", "on_failure rollback names the stage itself"),
        (
            "typo",
            "stages[4].on_failure.rollback",
            "on_failure rollback stage 'undeplyo' does not exist (did you mean 'undeploy'?)",
        ),
    ]


def test_the_stage_id_inputs_is_reserved() -> None:
    [problem] = check_spec(spec({"id": "inputs", "agent": "tester"}))
    assert problem.message == "stage id 'inputs' is reserved (conditions use inputs.<name>)"


def test_helpers() -> None:
    assert dotted(("stages", 2, "needs", 0)) == "stages[2].needs[0]"
    assert dotted(("inputs", "task", "type")) == "inputs.task.type"
    assert dotted(()) == ""
    assert suggest("revewer", AGENTS) == " (did you mean 'reviewer'?)"
    assert suggest("zzz", AGENTS) == ""
    assert LineMap({(): 1, ("a",): 3}).line(("a", 0, "b")) == 3
    assert LineMap().line(("a",)) is None


def test_validate_files_collects_problems_of_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nstages:\n  - {id: a, agent: tester}\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: b\nstages:\n  - {id: a, agent: tester, depends_on: [q]}\n", encoding="utf-8"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n", encoding="utf-8")
    missing = tmp_path / "missing.yaml"
    problems = validate_files([good, bad, broken, missing], agent_names=AGENTS).errors
    assert [(p.file, p.line) for p in problems] == [
        (str(bad), 3),
        (str(broken), 1),
        (str(missing), None),
    ]
    assert validate_files([good], agent_names=AGENTS).errors == []


@pytest.mark.parametrize("agents", [None, AGENTS])
def test_validate_files_with_no_paths_is_empty(agents: list[str] | None) -> None:
    assert validate_files([], agent_names=agents) == Validation()
