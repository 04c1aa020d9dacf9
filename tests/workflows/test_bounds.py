"""The bounds on template files (``workflows/bounds.py``) as behaviour: each hostile file is one
problem naming the file, the line and the bound, and files within the bounds load as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stageflow.errors import Problem, SpecErrors
from stageflow.workflows.bounds import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_STAGES,
)
from stageflow.workflows.loader import load_template_file, load_template_text
from stageflow.workflows.yaml_compose import REWORD_LIMIT
from tests.workflows.hostile import (
    billion_laughs_template,
    chained_template,
    deep_block_yaml_template,
    deep_toml_template,
    huge_template,
)


def problems_of(text: str, fmt: str = "yaml") -> list[Problem]:
    with pytest.raises(SpecErrors) as info:
        load_template_text(text, source="t.yaml", fmt="toml" if fmt == "toml" else "yaml")
    return info.value.problems


def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_bound() -> None:
    text = billion_laughs_template()
    assert len(text) < 1500  # small on disk...
    [problem] = problems_of(text)  # ...387 million strings once expanded
    assert problem.file == "t.yaml"
    assert problem.line == 8  # the first level whose aliases add more than the bound
    assert problem.path == "inputs.lol4.default[0]"
    assert problem.message.startswith("YAML aliases expand too far at column ")
    assert f"at most {MAX_ALIAS_NODES} nodes" in problem.message
    assert "*lol3 (anchored at line 7)" in problem.message


def test_aliases_within_the_bound_still_load_and_share_a_retry_policy() -> None:
    text = """\
name: shared
stages:
  - {id: a, run: echo a, on_failure: &retry {retry: {max_attempts: 5, backoff: 5s}}}
  - {id: b, run: echo b, on_failure: *retry, depends_on: [a]}
  - <<: &stage {run: echo c, depends_on: [b]}
    id: c
"""
    spec = load_template_text(text, source="t.yaml")
    assert [s.on_failure.max_attempts for s in spec.stages] == [5, 5, 3]
    assert spec.stage("c").depends_on == ["b"]


def test_an_alias_that_contains_itself_is_one_problem() -> None:
    [problem] = problems_of("name: x\nx: &a\n  - *a\nstages: [{id: a, run: echo}]\n")
    assert (problem.line, problem.path) == (3, "x[0]")
    assert problem.message.startswith("an alias may not contain itself")


@pytest.mark.parametrize(
    "text",
    [
        "name: " + "[" * 50_000 + "]" * 50_000 + "\n",  # flow style, one line
        deep_block_yaml_template(200),  # block style, one level per line
    ],
    ids=["flow", "block"],
)
def test_yaml_nested_deeper_than_the_bound_is_one_problem_at_its_line(text: str) -> None:
    [problem] = problems_of(text)
    assert problem.message.startswith("nested too deeply at column ")
    assert f"more than {MAX_DEPTH} levels" in problem.message
    assert problem.line is not None
    assert problem.path is not None and problem.path.endswith("...")  # shortened


def test_an_alias_counts_with_the_depth_of_what_it_stands_for() -> None:
    half = MAX_DEPTH // 2 + 2
    text = f"name: x\na: &deep {'[' * half}1{']' * half}\nb: {'[' * half}*deep{']' * half}\n"
    [problem] = problems_of(text + "stages: [{id: a, run: echo}]\n")
    assert problem.line == 3
    assert "the alias *deep (anchored at line 2) nests more than" in problem.message


def test_nesting_within_the_bound_loads() -> None:
    depth = MAX_DEPTH - 4  # root mapping, inputs, x, default
    text = (
        "name: x\ninputs:\n  x:\n    type: list\n"
        f"    default: {'[' * depth}1{']' * depth}\nstages: [{{id: a, run: echo}}]\n"
    )
    assert load_template_text(text, source="t").inputs["x"].default is not None


def test_toml_nested_deeper_than_the_bound_is_one_problem_at_its_line() -> None:
    [problem] = problems_of(deep_toml_template(), "toml")
    assert problem.line == 5
    assert problem.message.startswith("nested too deeply at column ")


def test_toml_nesting_through_dotted_keys_is_bounded_too() -> None:
    text = 'name = "x"\n' + "a" + ".a" * 200 + ' = 1\n[[stages]]\nid = "s"\nrun = "echo"\n'
    [problem] = problems_of(text, "toml")
    assert problem.message.startswith("nested too deeply")
    assert problem.line == 2


def test_brackets_in_toml_strings_and_comments_do_not_count() -> None:
    deep = "[" * (MAX_DEPTH + 10)
    text = (
        f'name = "x"  # {deep}\ndescription = "{deep}"\n'
        f"[inputs.y]\ndefault = '''\n{deep}\n'''\n"
        '[[stages]]\nid = "s"\nrun = "echo"\n'
    )
    spec = load_template_text(text, source="t.toml", fmt="toml")
    assert spec.description == deep


def test_more_stages_than_the_bound_is_one_problem_at_the_stages_key() -> None:
    [problem] = problems_of(chained_template(MAX_STAGES + 1))
    assert (problem.line, problem.path) == (3, "stages")
    assert problem.message == (
        f"too many stages: {MAX_STAGES + 1}; a template may have at most {MAX_STAGES}"
    )
    assert len(load_template_text(chained_template(MAX_STAGES), source="t").stages) == MAX_STAGES


def test_a_file_over_the_size_bound_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(huge_template(MAX_FILE_BYTES + 4096), encoding="utf-8")
    assert path.stat().st_size > MAX_FILE_BYTES
    with pytest.raises(SpecErrors) as info:
        load_template_file(path)
    [problem] = info.value.problems
    assert problem.file == str(path)
    assert problem.message.startswith("the file is too large: 1.0 MiB (")
    assert problem.message.endswith("template files may be at most 1.0 MiB")
    with pytest.raises(SpecErrors) as info:  # the same bound on text given directly
        load_template_text(path.read_text(encoding="utf-8"), source="t")
    assert info.value.problems[0].message.startswith("the file is too large")


def test_a_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecErrors) as info:
        load_template_file(fifo)
    assert info.value.problems[0].message == (
        "not a regular file: template files must be plain files"
    )


def test_a_syntax_error_in_a_large_file_is_worded_by_libyaml_without_a_second_parse() -> None:
    # small files get the pure-Python parser's words (a second parse, about 10 s per MB)
    small = chained_template(3) + "  - [unclosed\n"
    large = chained_template(1000) + "  - [unclosed\n"
    assert len(small) < REWORD_LIMIT < len(large)
    [worded] = problems_of(small)
    [plain] = problems_of(large)
    assert "expected ',' or ']', but got '<stream end>'" in worded.message
    assert "did not find expected ',' or ']'" in plain.message
    assert plain.line == large.count("\n") + 1
