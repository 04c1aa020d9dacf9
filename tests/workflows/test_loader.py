"""The YAML/TOML loader: specs with line numbers, and every problem located."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.errors import Problem, SpecErrors
from stageflow.workflows.loader import load_template_file, load_template_text

AGENTS = ["architect", "developer", "tester", "reviewer"]

FEATURE_YAML = """\
name: feature_development
description: Design, implement, test and review a feature
version: 2
inputs: {task: {type: string, required: true}, strict: boolean}
limits: {max_concurrent_agents: 3, budget_usd: 5.0}
stages:
  - id: architecture
    agent: architect
    produces: [design]
    approval: required
  - id: implementation
    agent: developer
    depends_on: [architecture]
    needs: [architecture.design]
    produces: [patch_summary]
    on_failure: {retry: {max_attempts: 3, backoff: 5s}}
  - id: tests
    agent: tester
    depends_on: [architecture]
    needs: [architecture.design]
    produces: [test_report]
    timeout: 10m
  - id: review
    agent: reviewer
    depends_on: [implementation, tests]
    needs: [implementation.patch_summary, tests.test_report]
    produces: [review]
    gate: "tests.outputs.passed == true or not inputs.strict"
"""

FEATURE_TOML = """\
name = "feature_development"
description = "Design, implement, test and review a feature"
version = "2"

[inputs.task]
type = "string"
required = true

[inputs.strict]
type = "boolean"

[limits]
max_concurrent_agents = 3
budget_usd = 5.0

[[stages]]
id = "architecture"
agent = "architect"
produces = ["design"]
approval = "required"

[[stages]]
id = "implementation"
agent = "developer"
depends_on = ["architecture"]
needs = ["architecture.design"]
produces = ["patch_summary"]
on_failure = { retry = { max_attempts = 3, backoff = "5s" } }

[[stages]]
id = "tests"
agent = "tester"
depends_on = ["architecture"]
needs = ["architecture.design"]
produces = ["test_report"]
timeout = "10m"

[[stages]]
id = "review"
agent = "reviewer"
depends_on = ["implementation", "tests"]
needs = ["implementation.patch_summary", "tests.test_report"]
produces = ["review"]
gate = "tests.outputs.passed == true or not inputs.strict"
"""


def problems_of(text: str, *, fmt: str = "yaml", **kw: object) -> list[Problem]:
    with pytest.raises(SpecErrors) as info:
        load_template_text(text, source="t.yaml", fmt=fmt, **kw)  # type: ignore[arg-type]
    return info.value.problems


def test_loads_yaml_with_stage_lines_and_source() -> None:
    spec = load_template_text(FEATURE_YAML, source="feature.yaml", agent_names=AGENTS)
    assert spec.source == "feature.yaml"
    assert [(s.id, s.line) for s in spec.stages] == [
        ("architecture", 7),
        ("implementation", 11),
        ("tests", 17),
        ("review", 23),
    ]
    assert spec.version == "2"  # a YAML number is accepted as the version string
    assert spec.stage("implementation").on_failure.max_attempts == 3
    assert spec.stage("tests").timeout == 600.0


def test_toml_and_yaml_give_the_same_spec() -> None:
    from_yaml = load_template_text(FEATURE_YAML, source="f.yaml", agent_names=AGENTS)
    from_toml = load_template_text(FEATURE_TOML, source="f.toml", fmt="toml", agent_names=AGENTS)
    assert from_toml.model_dump() == from_yaml.model_dump()
    assert [s.line for s in from_toml.stages] == [16, 22, 30, 38]
    assert from_toml.source == "f.toml"


def test_toml_problems_point_at_the_key_line() -> None:
    text = FEATURE_TOML.replace('needs = ["tests.test_report"', 'needs = ["tests.report"')
    text = text.replace(
        'needs = ["implementation.patch_summary", "tests.test_report"]',
        'needs = ["implementation.patch_summary", "tests.report"]',
    )
    with pytest.raises(SpecErrors) as info:
        load_template_text(text, source="f.toml", fmt="toml")
    assert [str(p) for p in info.value.problems] == [
        "f.toml:42: stage 'review': stages[3].needs[1]: needs 'tests.report' but stage 'tests' "
        "does not produce 'report' (produces: test_report)"
    ]


def test_toml_nested_table_lines() -> None:
    text = FEATURE_TOML + '\n[stages.on_failure]\naction = "retry"\nmax_attempts = 0\n'
    [problem] = problems_of(text, fmt="toml")
    assert (problem.line, problem.stage, problem.path) == (
        48,
        "review",
        "stages[3].on_failure.max_attempts",
    )


def test_toml_decode_error_carries_line_and_column() -> None:
    [problem] = problems_of('name = "x"\n\n[[stages]]\nid = \n', fmt="toml")
    assert problem == Problem(
        "invalid TOML: Invalid value (column 6)", file="t.yaml", line=4, stage=None, path=None
    )


def test_problem_lines_follow_block_sequences() -> None:
    text = FEATURE_YAML.replace(
        "    needs: [implementation.patch_summary, tests.test_report]\n",
        "    needs:\n      - implementation.patch_summary\n      - tests.report\n",
    )
    [problem] = problems_of(text, agent_names=AGENTS)
    assert (problem.file, problem.line, problem.stage, problem.path) == (
        "t.yaml",
        28,
        "review",
        "stages[3].needs[1]",
    )


def test_bad_yaml_reports_line_and_column() -> None:
    [problem] = problems_of("name: x\nstages:\n  - id: a\n   agent: b: c\n")
    assert problem.line == 4
    assert problem.message.startswith("invalid YAML: ")
    assert "column" in problem.message


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    text = "name: x\nstages:\n  - id: a\n    agent: architect\n    agent: tester\nname: y\n"
    assert [str(p) for p in problems_of(text)] == [
        "t.yaml:5: stage 'a': stages[0].agent: duplicate key 'agent' (first at line 4)",
        "t.yaml:6: name: duplicate key 'name' (first at line 1)",
    ]


def test_anchors_and_merge_keys_are_not_duplicates() -> None:
    text = """\
name: merged
x-defaults: &defaults
  agent: developer
  produces: [notes]
stages:
  - <<: *defaults
    id: one
  - <<: *defaults
    id: two
    agent: tester
"""
    # x-defaults is an unknown top-level field; the merge keys themselves are fine
    assert [str(p) for p in problems_of(text)] == [
        "t.yaml:2: x-defaults: unknown field 'x-defaults'"
    ]


def test_merge_keys_load() -> None:
    text = """\
name: merged
stages:
  - &first
    id: one
    agent: developer
    produces: [notes]
  - <<: *first
    id: two
    agent: tester
"""
    spec = load_template_text(text, source="m.yaml")
    assert [(s.id, s.agent, s.produces, s.line) for s in spec.stages] == [
        ("one", "developer", ["notes"], 3),
        ("two", "tester", ["notes"], 7),
    ]


def test_recursive_alias_is_a_problem_not_a_hang() -> None:
    text = "name: x\ninputs:\n  a: &d\n    default: [*d]\nstages: [{id: a, agent: tester}]\n"
    assert [str(p) for p in problems_of(text)] == [
        "t.yaml:4: inputs.a.default[0]: an alias may not contain itself at column 15"
    ]


def test_deeply_nested_yaml_is_a_problem() -> None:
    problems = problems_of("name: " + "[" * 3000 + "]" * 3000 + "\n")
    assert problems[0].file == "t.yaml"


def test_pydantic_errors_become_located_problems() -> None:
    text = """\
name: x
stages:
  - id: a
    agent: architect
    dependson: [b]
    max_rework: lots
  - agent: developer
"""
    assert [str(p) for p in problems_of(text)] == [
        "t.yaml:5: stage 'a': stages[0].dependson: unknown field 'dependson' "
        "(did you mean 'depends_on'?)",
        "t.yaml:6: stage 'a': stages[0].max_rework: Input should be a valid integer, unable to "
        "parse string as an integer; got 'lots'",
        "t.yaml:7: stages[1].id: missing required field 'id'",
    ]


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "the template is empty", None),
        ("# only a comment\n", "the template is empty", None),
        ("- a\n- b\n", "a template must be a mapping, got a list", 1),
        ("just text\n", "a template must be a mapping, got a string", 1),
        ("name: x\n", "missing required field 'stages'", 1),
        ("name: x\nstages: []\n", "a template needs at least one stage", 2),
        ("name: x\nstages: {a: 1}\n", "expected a list, got a mapping", 2),
    ],
)
def test_top_level_shape_problems(text: str, message: str, line: int | None) -> None:
    [problem] = problems_of(text)
    assert (problem.message, problem.line) == (message, line)


def test_loader_owned_fields_cannot_be_set_by_the_file() -> None:
    text = "name: x\nsource: elsewhere\nstages:\n  - id: a\n    agent: tester\n    line: 99\n"
    assert [str(p) for p in problems_of(text)] == [
        "t.yaml:2: source: unknown field 'source'",
        "t.yaml:6: stage 'a': stages[0].line: unknown field 'line'",
    ]


def test_check_false_skips_cross_stage_checks() -> None:
    text = "name: x\nstages:\n  - id: a\n    agent: nobody\n    depends_on: [ghost]\n"
    spec = load_template_text(text, source="t.yaml", check=False, agent_names=AGENTS)
    assert spec.stages[0].depends_on == ["ghost"]
    assert len(problems_of(text, agent_names=AGENTS)) == 2


def test_structural_and_duplicate_key_problems_are_reported_together() -> None:
    text = "name: x\nname: y\nstages:\n  - id: a\n    agent: tester\n    bogus: 1\n"
    assert [(p.line, p.message) for p in problems_of(text)] == [
        (2, "duplicate key 'name' (first at line 1)"),
        (6, "unknown field 'bogus'"),
    ]


def test_load_file_uses_the_given_path_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("wf.yml").write_text(
        FEATURE_YAML.replace("agent: tester", "agent: tset"), encoding="utf-8"
    )
    with pytest.raises(SpecErrors) as info:
        load_template_file(Path("wf.yml"), agent_names=AGENTS)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.stage) == ("wf.yml", 18, "tests")
    assert "did you mean 'tester'?" in problem.message


def test_load_file_picks_toml_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "wf.toml"
    path.write_text(FEATURE_TOML, encoding="utf-8")
    spec = load_template_file(path, agent_names=AGENTS)
    assert spec.source == str(path)
    assert spec.stage_ids == ["architecture", "implementation", "tests", "review"]


def test_unreadable_and_undecodable_files_are_problems(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpecErrors) as info:
        load_template_file(missing)
    assert info.value.problems[0].file == str(missing)
    assert info.value.problems[0].message.startswith("cannot read file: ")

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecErrors) as info:
        load_template_file(binary)
    assert info.value.problems[0].message.startswith("not UTF-8 text: ")
