"""The ``debate:`` block: short forms, and every mistake reported with where it is."""

from __future__ import annotations

import textwrap

import pytest

from stageflow.workflows.loader import check_template_text

AGENTS = ["proponent", "critic", "moderator"]


def check(stage_body: str) -> list[tuple[str | None, int | None, str]]:
    text = "name: t\nstages:\n  - id: d\n    produces: [decision]\n" + textwrap.indent(
        textwrap.dedent(stage_body), "    "
    )
    checked = check_template_text(text, source="t.yaml", agent_names=AGENTS)
    return [(p.path, p.line, p.message) for p in checked.errors]


def test_short_forms_load() -> None:
    checked = check_template_text(
        textwrap.dedent(
            """\
            name: t
            stages:
              - id: d
                produces: [decision]
                debate:
                  participants: [{agent: proponent}, {agent: critic, role: critic}]
                  rounds: 3
                  moderator: haiku
            """
        ),
        source="t.yaml",
        agent_names=AGENTS,
    )
    assert checked.errors == []
    assert checked.spec is not None
    debate = checked.spec.stages[0].debate
    assert debate is not None
    assert (debate.rounds.min, debate.rounds.max, debate.moderator.model) == (3, 3, "haiku")
    assert checked.spec.stages[0].kind == "debate"


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        (
            "debate: {participants: [{agent: proponent}]}",
            "stages[0].debate.participants",
            "at least 2",
        ),
        (
            "debate: {participants: [{agent: proponent}, {agent: critic}], "
            "rounds: {min: 4, max: 2}}",
            "stages[0].debate.rounds",
            "min (4) is more than max (2)",
        ),
        (
            "debate: {participants: [{agent: proponent}, {agent: critic}], "
            "consensus_threshold: 1.5}",
            "stages[0].debate.consensus_threshold",
            "less than or equal to 1",
        ),
        (
            "debate: {participants: [{agent: proponent}, {agent: proponent}]}",
            "stages[0].debate",
            "participants named twice: proponent",
        ),
        (
            "agent: critic\ndebate: {participants: [{agent: proponent}, {agent: critic}]}",
            "stages[0]",
            "exactly one of 'agent', 'run' or 'debate'",
        ),
        (
            "debate: {participants: [{agent: proponent}, {agent: critc}]}",
            "stages[0].debate.participants[1].agent",
            "unknown agent 'critc' (did you mean 'critic'?)",
        ),
        (
            "debate: {participants: [{agent: proponent}, {agent: critic, role: judge}]}",
            "stages[0].debate.participants[1].role",
            "proponent",
        ),
    ],
)
def test_mistakes_name_their_place(body: str, where: str, says: str) -> None:
    problems = check(body)
    assert problems, body
    assert any(p == where and says in m and line is not None for p, line, m in problems), problems
