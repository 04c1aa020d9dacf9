"""Parsing Claude Code style agent files: fields, short forms, line endings and error reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.agents.parse import parse_agent_file, parse_agent_text
from stageflow.errors import Problem, SpecError, SpecErrors

GOOD = """\
---
name: code-reviewer
description: Reviews a change. Use after implementation.
tools: Read, Grep, Glob
model: sonnet
---

You are a careful reviewer.

Check correctness first.
"""


def parse(text: str, source: str | None = "agent.md", layer: str = "project") -> object:
    return parse_agent_text(text, source=source, layer=layer)


def problems_of(text: str, source: str | None = "agent.md") -> list[Problem]:
    with pytest.raises(SpecError) as info:
        parse_agent_text(text, source=source, layer="project")
    exc = info.value
    return exc.problems if isinstance(exc, SpecErrors) else [exc.problem]


def test_a_claude_code_agent_file_parses_into_its_fields() -> None:
    agent = parse_agent_text(GOOD, source="agents/code-reviewer.md", layer="project-claude")
    assert agent.name == "code-reviewer"
    assert agent.description == "Reviews a change. Use after implementation."
    assert agent.tools == ["Read", "Grep", "Glob"]
    assert agent.model == "sonnet"
    assert agent.system_prompt == "You are a careful reviewer.\n\nCheck correctness first."
    assert agent.source == "agents/code-reviewer.md"
    assert agent.layer == "project-claude"
    assert agent.extra == {}
    assert agent.max_turns is None
    assert agent.budget_usd is None


def test_tools_given_as_a_yaml_list_equal_the_comma_form() -> None:
    listed = GOOD.replace("tools: Read, Grep, Glob", "tools:\n  - Read\n  - Grep\n  - Glob")
    assert parse_agent_text(listed, source="a.md", layer="user").tools == ["Read", "Grep", "Glob"]


def test_comma_tools_keep_commas_inside_permission_patterns() -> None:
    text = GOOD.replace(
        "tools: Read, Grep, Glob", "tools: Read,Bash(git diff:*, git log:*) , Grep,"
    )
    agent = parse_agent_text(text, source="a.md", layer="user")
    assert agent.tools == ["Read", "Bash(git diff:*, git log:*)", "Grep"]


def test_repeated_tools_are_listed_once() -> None:
    text = GOOD.replace("tools: Read, Grep, Glob", "tools: Read, Grep, Read")
    assert parse_agent_text(text, source="a.md", layer="user").tools == ["Read", "Grep"]


@pytest.mark.parametrize("line", ["", "tools:\n", "tools: ''\n", "tools: []\n"])
def test_absent_or_empty_tools_mean_inherit_all(line: str) -> None:
    text = GOOD.replace("tools: Read, Grep, Glob\n", line)
    assert parse_agent_text(text, source="a.md", layer="user").tools == []


def test_model_defaults_to_inherit_and_aliases_are_lowercased() -> None:
    assert parse_agent_text(GOOD.replace("model: sonnet\n", ""), source="a", layer="u").model == (
        "inherit"
    )
    assert parse_agent_text(GOOD.replace("sonnet", "Opus"), source="a", layer="u").model == "opus"


def test_a_full_model_id_is_kept_as_written() -> None:
    text = GOOD.replace("model: sonnet", "model: claude-Sonnet-4-5-20250929")
    assert parse_agent_text(text, source="a", layer="u").model == "claude-Sonnet-4-5-20250929"


def test_unknown_keys_are_kept_unchanged_in_extra() -> None:
    text = GOOD.replace(
        "model: sonnet\n",
        "model: sonnet\ncolor: cyan\npermissionMode: acceptEdits\n"
        "hooks:\n  PreToolUse: [{matcher: Bash}]\ndisallowedTools: Write, Edit\n",
    )
    agent = parse_agent_text(text, source="a.md", layer="project-claude")
    assert agent.extra == {
        "color": "cyan",
        "permissionMode": "acceptEdits",
        "hooks": {"PreToolUse": [{"matcher": "Bash"}]},
        "disallowedTools": "Write, Edit",
    }


def test_stageflow_keys_are_parsed() -> None:
    text = GOOD.replace(
        "model: sonnet\n",
        "model: sonnet\nmax_turns: 25\nbudget_usd: 2\nskills: testing, pytest\n"
        "knowledge: {tags: [api, testing], max_tokens: 1500}\n",
    )
    agent = parse_agent_text(text, source="a.md", layer="project")
    assert agent.max_turns == 25
    assert agent.budget_usd == 2.0
    assert isinstance(agent.budget_usd, float)
    assert agent.skills == ["testing", "pytest"]
    assert agent.knowledge == {"tags": ["api", "testing"], "max_tokens": 1500}
    assert agent.extra == {}


def test_claude_codes_max_turns_spelling_sets_max_turns() -> None:
    text = GOOD.replace("model: sonnet\n", "model: sonnet\nmaxTurns: 12\n")
    agent = parse_agent_text(text, source="a.md", layer="project-claude")
    assert agent.max_turns == 12
    assert "maxTurns" not in agent.extra


def test_names_may_use_upper_case_and_are_kept_as_written() -> None:
    text = GOOD.replace("name: code-reviewer", "name: Code_Reviewer2")
    assert parse_agent_text(text, source="a.md", layer="user").name == "Code_Reviewer2"


def test_crlf_line_endings_and_a_bom_parse_like_plain_text() -> None:
    plain = parse_agent_text(GOOD, source="a.md", layer="user")
    windows = parse_agent_text("\ufeff" + GOOD.replace("\n", "\r\n"), source="a.md", layer="user")
    assert windows == plain
    assert "\r" not in windows.system_prompt


def test_problem_lines_are_the_same_with_crlf_line_endings() -> None:
    text = GOOD.replace("model: sonnet", "model: [sonnet")
    lf = problems_of(text)
    crlf = problems_of("\ufeff" + text.replace("\n", "\r\n"))
    assert [(p.line, p.message) for p in crlf] == [(p.line, p.message) for p in lf]
    assert lf[0].line == 5  # the unclosed list is the last line of the front matter


def test_the_same_text_has_the_same_content_hash_wherever_it_lives() -> None:
    one = parse_agent_text(GOOD, source="a/x.md", layer="builtin")
    two = parse_agent_text(GOOD, source="b/y.md", layer="project")
    changed = parse_agent_text(GOOD.replace("careful", "strict"), source="a/x.md", layer="builtin")
    assert one.content_hash == two.content_hash
    assert one.content_hash != changed.content_hash


def test_missing_front_matter_is_reported_at_line_one_with_the_file() -> None:
    (problem,) = problems_of("You are a reviewer.\n", source="agents/r.md")
    assert problem == Problem(
        "no front matter: an agent file starts with a '---' line, then YAML keys (name, "
        "description, ...), then a closing '---' line",
        file="agents/r.md",
        line=1,
    )


def test_unterminated_front_matter_is_reported() -> None:
    (problem,) = problems_of("---\nname: r\ndescription: d\n\nbody\n")
    assert problem == Problem(
        "unterminated front matter: no closing '---' line", file="agent.md", line=1
    )


def test_a_yaml_error_line_counts_the_opening_fence() -> None:
    text = "---\nname: r\ndescription: d\nmodel: a: b\n---\nbody\n"
    (problem,) = problems_of(text)
    assert problem.line == 4
    assert problem.message == "invalid YAML in front matter: mapping values are not allowed here"


def test_front_matter_that_is_not_a_mapping_is_reported() -> None:
    (problem,) = problems_of("---\n- name: r\n---\nbody\n")
    assert problem == Problem(
        "front matter must be a mapping of keys (name, description, ...), got a list",
        file="agent.md",
        line=2,
    )


def test_text_without_a_source_is_named_agent_in_problems() -> None:
    (problem,) = problems_of("no front matter", source=None)
    assert problem.file == "<agent>"


@pytest.mark.parametrize(
    ("field_line", "path", "message"),
    [
        ("max_turns: 0", "max_turns", "must be an integer greater than 0, got 0"),
        ("max_turns: 2.5", "max_turns", "must be an integer greater than 0, got 2.5"),
        ("budget_usd: true", "budget_usd", "must be a number >= 0 (US dollars), got true"),
        ("budget_usd: '3'", "budget_usd", "must be a number >= 0 (US dollars), got '3'"),
        ("knowledge: api", "knowledge", "must be a mapping (e.g. {tags: [api]}), got 'api'"),
        (
            "skills: {a: 1}",
            "skills",
            "must be a comma-separated string or a list of skill names, got a mapping",
        ),
        (
            "model: ''",
            "model",
            "must be opus, sonnet, haiku, inherit or a full model id, got ''",
        ),
    ],
)
def test_a_wrongly_typed_value_is_reported_at_its_key(
    field_line: str, path: str, message: str
) -> None:
    text = GOOD.replace("model: sonnet", field_line)
    (problem,) = problems_of(text)
    assert problem == Problem(message, file="agent.md", line=5, path=path)


def test_every_field_problem_is_reported_together_in_line_order() -> None:
    text = "---\nmodel: 3\nname: 'a b'\nmax_turns: -1\n---\n"
    with pytest.raises(SpecErrors) as info:
        parse_agent_text(text, source="x.md", layer="user")
    assert [(p.line, p.path) for p in info.value.problems] == [
        (1, None),  # missing description
        (2, "model"),
        (3, "name"),
        (4, "max_turns"),
        (5, None),  # empty body, at the closing fence
    ]


def test_parse_agent_file_reads_utf8_and_records_the_path(tmp_path: Path) -> None:
    path = tmp_path / "code-reviewer.md"
    path.write_bytes(("\ufeff" + GOOD.replace("careful", "sorgfältiger")).encode())
    agent = parse_agent_file(path, layer="project")
    assert agent.source == str(path)
    assert agent.layer == "project"
    assert "sorgfältiger" in agent.system_prompt


def test_parse_agent_file_reports_the_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.md"
    path.write_text("---\nname: broken\n---\nbody\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        parse_agent_file(path, layer="user")
    assert str(info.value) == (
        f"{path}:1: missing required key 'description' (Claude Code uses it to decide when to "
        "delegate to the agent)"
    )


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes(b"---\nname: r\ndescription: caf\xe9\n---\nbody\n")
    with pytest.raises(SpecError) as info:
        parse_agent_file(path, layer="user")
    assert info.value.problem == Problem("not UTF-8 text (bad byte at offset 28)", file=str(path))


def test_a_missing_file_is_reported_not_raised_as_oserror(tmp_path: Path) -> None:
    path = tmp_path / "gone.md"
    with pytest.raises(SpecError) as info:
        parse_agent_file(path, layer="user")
    assert info.value.problem.file == str(path)
    assert info.value.problem.message.startswith("cannot read file: ")


def test_a_horizontal_rule_in_the_body_is_not_a_fence() -> None:
    agent = parse_agent_text(GOOD + "\n---\n\nMore rules.\n", source="a.md", layer="user")
    assert agent.system_prompt.endswith("Check correctness first.\n\n---\n\nMore rules.")
