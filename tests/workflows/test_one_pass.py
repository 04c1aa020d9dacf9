"""Schema and cross-stage errors in one pass, without the echoes of a schema error; the
upstream relation and cycles on large graphs (``graph.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from stageflow.errors import Problem, SpecErrors
from stageflow.workflows.graph import Upstream, components
from stageflow.workflows.loader import load_template_text
from stageflow.workflows.spec import WorkflowSpec
from stageflow.workflows.validate import check_spec

AGENTS = ["architect", "developer", "tester", "reviewer"]


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecErrors) as info:
        load_template_text(text, source="t.yaml", agent_names=AGENTS)
    return [str(p) for p in info.value.problems]


def test_cross_stage_errors_come_with_the_schema_errors_in_line_order() -> None:
    text = """\
name: both
stages:
  - id: a
    agent: architect
    max_rework: lots
  - id: b
    agent: tester
    depends_on: [zz]
    timeout: soon
"""
    assert problems_of(text) == [
        "t.yaml:5: stage 'a': stages[0].max_rework: Input should be a valid integer, unable to "
        "parse string as an integer; got 'lots'",
        "t.yaml:8: stage 'b': stages[1].depends_on[0]: depends_on unknown stage 'zz'",
        "t.yaml:9: stage 'b': stages[1].timeout: expected a duration such as 30s, 10m or 2h, "
        "got 'soon'",
    ]


@pytest.mark.parametrize(
    ("stage_b", "schema_error"),
    [
        ("depends_on: 5", "stages[1].depends_on: expected a list, got an integer"),
        ("depends_on: [a, 5]", "stages[1].depends_on[1]: expected a string, got an integer"),
        ("dependson: [a]", "stages[1].dependson: unknown field 'dependson'"),
    ],
    ids=["wrong type", "wrong item", "misspelled"],
)
def test_a_broken_depends_on_is_not_echoed_as_not_upstream(stage_b: str, schema_error: str) -> None:
    text = f"""\
name: echo
stages:
  - {{id: a, agent: architect, produces: [design]}}
  - id: b
    agent: developer
    {stage_b}
    needs: [a.design]
    gate: a.outputs.ok
  - {{id: c, agent: tester, depends_on: [b], needs: [a.design]}}
"""
    [problem] = problems_of(text)
    assert schema_error in problem


def test_a_broken_produces_is_not_echoed_as_does_not_produce() -> None:
    text = """\
name: echo
stages:
  - {id: a, agent: architect, produce: [design]}
  - {id: b, agent: developer, depends_on: [a], needs: [a.design]}
"""
    [problem] = problems_of(text)
    assert "unknown field 'produce' (did you mean 'produces'?)" in problem


def test_a_stage_without_an_id_makes_unknown_stage_undecidable() -> None:
    text = """\
name: echo
stages:
  - {idd: design, agent: architect, produces: [d]}
  - {id: b, agent: developer, depends_on: [design], needs: [design.d], gate: design.status}
"""
    problems = problems_of(text)
    assert sorted(p.split(": ", 2)[-1] for p in problems) == [
        "missing required field 'id'",
        "unknown field 'idd' (did you mean 'id'?)",
    ]


def test_broken_inputs_do_not_make_every_input_reference_undeclared() -> None:
    text = "name: x\ninputs: [level]\nstages:\n  - {id: a, run: echo, when: inputs.level > 1}\n"
    [problem] = problems_of(text)
    assert "t.yaml:2: inputs: expected a mapping, got a list" in problem


def spec(*stages: dict[str, Any]) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "t", "stages": list(stages)})


def test_a_cycle_behind_exponentially_many_acyclic_paths_is_still_reported() -> None:
    # stage k depends on k+1 and k+2: a ladder with Fibonacci-many paths, no cycle; the cycle
    # x <-> y comes after it. Enumerating paths used to run out of steps first and report
    # nothing, so the cyclic template passed.
    n = 60
    ladder = [
        {"id": f"s{k}", "run": "echo", "depends_on": [f"s{j}" for j in (k + 1, k + 2) if j < n]}
        for k in range(n)
    ]
    problems = check_spec(
        spec(
            *ladder,
            {"id": "x", "run": "echo", "depends_on": ["y"]},
            {"id": "y", "run": "echo", "depends_on": ["x"]},
        )
    )
    assert [p.message for p in problems] == ["dependency cycle: x -> y -> x"]


def test_every_stage_of_a_long_chain_sees_the_whole_chain_upstream() -> None:
    n = 3000
    edges = [[i - 1] if i else [] for i in range(n)]
    graph = Upstream(edges, [True] * n)
    assert graph.has(n - 1, 0) and graph.has(1, 0) and not graph.has(0, 1)
    assert not any(graph.cyclic)
    assert list(graph.cycles(list(range(n)))) == []


def test_a_long_cycle_is_one_component_and_reported_once() -> None:
    n = 3000  # stage i depends on i+1, the last on the first
    edges = [[(i + 1) % n] for i in range(n)]
    assert components(edges) == [list(range(n))]
    [cycle] = Upstream(edges, [True] * n).cycles(list(range(n)))
    assert cycle == [*range(n), 0]


def test_components_come_after_the_components_they_depend_on() -> None:
    # 0 -> 1 <-> 2 -> 3
    comps = components([[1], [2], [1, 3], []])
    assert comps == [[3], [1, 2], [0]]


def test_a_stage_below_a_broken_depends_on_is_uncertain() -> None:
    graph = Upstream([[], [0], [1], []], [True, False, True, True])
    assert [graph.certain(i) for i in range(4)] == [True, False, False, True]


def test_problems_of_schema_and_cross_stage_checks_are_problems() -> None:
    with pytest.raises(SpecErrors) as info:
        load_template_text(
            "name: x\nstages:\n  - {id: 1a, run: echo, depends_on: [q]}\n", source="t"
        )
    assert all(isinstance(p, Problem) and p.file == "t" for p in info.value.problems)
    assert len(info.value.problems) == 2
