"""The condition language: parsing, precedence, evaluation and hostile input."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stageflow.workflows.conditions import (
    MAX_DEPTH,
    MAX_LENGTH,
    Condition,
    ConditionError,
    parse_condition,
)

CTX: dict[str, Any] = {
    "inputs": {"task": "add login", "mode": "full", "level": 3, "config": {"deep": {"x": 1}}},
    "design": {"status": "succeeded", "outputs": {"risky": False, "tags": ["api", "db"]}},
    "tests": {
        "status": "failed",
        "outputs": {"passed": False, "count": 2, "ratio": 0.5, "summary": "2 of 4 failed"},
    },
    "lint": {"status": "skipped", "outputs": {}},
}

HELP_TAIL = "<stage>.outputs.<key>, inputs.<name>, all_passed, any_approved or passed)"


def ev(text: str, ctx: dict[str, Any] | None = None) -> bool:
    return parse_condition(text).evaluate(CTX if ctx is None else ctx)


# -- evaluation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("design.status == 'succeeded'", True),
        ('design.status == "succeeded"', True),
        ("design.status != 'succeeded'", False),
        ("design.status == 'Succeeded'", False),  # string comparison is exact
        ("tests.outputs.count == 2.0", True),  # int and float compare by value
        ("tests.outputs.ratio < 1", True),
        ("tests.outputs.count >= 2 and tests.outputs.count <= 2", True),
        ("tests.outputs.count > 2", False),
        ("tests.outputs.passed == false", True),
        ("tests.outputs.passed == 0", False),  # booleans are not numbers
        ("inputs.level == true", False),
        ("inputs.mode", True),  # a bare reference is truthy-tested
        ("lint.outputs.anything", False),
        ("inputs.config.deep.x == 1", True),
        ("design.outputs.tags.1 == 'db'", True),
        ("design.outputs.tags == ['api', 'db']", True),
        ("'api' in design.outputs.tags", True),
        ("'web' not in design.outputs.tags", True),
        ("tests.status in ['failed', 'cancelled']", True),
        ("tests.status not in ['failed', 'cancelled']", False),
        ("2 in [1.0, 2.0]", True),
        ("'failed' in tests.outputs.summary", True),  # substring of a string
        ("'deep' in inputs.config", True),  # key of a mapping
        ("'b' < 'c'", True),
        ("TRUE and not FALSE", True),
        ("Null == null", True),
        ("-1 < 0", True),
        ("1e3 == 1000", True),
    ],
)
def test_evaluates_comparisons_and_references(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not true or true", True),  # not binds tighter than or
        ("not (true or true)", False),
        ("not design.status == 'failed'", True),  # not applies to the whole comparison
        ("! tests.outputs.passed && design.status == 'succeeded'", True),
        ("false || false || true", True),
        ("true && true && false", False),
        ("not not true", True),
        ("!!false", False),
    ],
)
def test_respects_precedence_and_symbolic_operators(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "nosuch.status == 'succeeded'",
        "nosuch.outputs.x > 1",
        "nosuch.outputs.x < 1",
        "inputs.missing >= 0",
        "inputs.missing <= 0",
        "inputs.mode > 1",  # str vs int ordering
        "1 < 'a'",
        "null < 1",
        "design.outputs.tags.9 == 'x'",
        "inputs.config.deep.x.y == 1",
        "'x' in nosuch.outputs.list",
        "1 in inputs.mode",
        "tests.outputs.passed",
    ],
)
def test_missing_references_and_mismatched_types_are_false(text: str) -> None:
    assert ev(text) is False


def test_missing_reference_equals_null() -> None:
    assert ev("nosuch.outputs.x == null") is True
    assert ev("nosuch.outputs.x != null") is False
    assert ev("'x' not in nosuch.outputs.list") is True


def test_evaluates_against_an_empty_context() -> None:
    assert ev("design.status == 'succeeded' or inputs.task", {}) is False


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'a\nb\tc'", "a\nb\tc"),
        (r"'back\\slash'", "back\\slash"),
        (r"'caf\u00e9'", "café"),
        ("'it''", None),
    ],
)
def test_string_literals_decode_escapes(text: str, value: str | None) -> None:
    if value is None:
        with pytest.raises(ConditionError):
            parse_condition(f"inputs.s == {text}")
        return
    assert parse_condition(f"inputs.s == {text}").evaluate({"inputs": {"s": value}}) is True


def test_reports_stage_and_input_references() -> None:
    cond = parse_condition(
        "design.status == 'succeeded' and (tests.outputs.a.b > inputs.level or "
        "inputs.mode in ['x']) and not lint.status"
    )
    assert cond.stage_refs() == frozenset({"design", "tests", "lint"})
    assert cond.input_refs() == frozenset({"level", "mode"})


def test_condition_is_frozen_and_compares_by_text() -> None:
    cond = parse_condition("design.status == 'succeeded'")
    assert cond == Condition("design.status == 'succeeded'")
    assert str(cond) == "design.status == 'succeeded'"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.text = "true"  # type: ignore[misc]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "empty condition at column 1", 0),
        ("   ", "empty condition at column 1", 0),
        ("a.status == (b.status))", "unexpected ')' at column 23", 22),
        ("(a.status == 'x'", "expected ')' at column 17", 16),
        ("a.status ==", "unexpected end of condition at column 12", 11),
        ("a.status = 'x'", "unexpected character '=' (use '==' to compare) at column 10", 9),
        ("a.status == 'x' @", "unexpected character '@' at column 17", 16),
        ("a.status == 'x", "unterminated string at column 13", 12),
        (r"a.status == 'x\q'", "unknown escape '\\q' in string at column 15", 14),
        (
            "design",
            "unknown reference 'design' (use <stage>.status, " + HELP_TAIL + " at column 1",
            0,
        ),
        (
            "true and design.outputs",
            "unknown reference 'design.outputs' (use <stage>.status, "
            + HELP_TAIL
            + " at column 10",
            9,
        ),
        (
            "design.state == 1",
            "unknown reference 'design.state' (use <stage>.status, " + HELP_TAIL + " at column 1",
            0,
        ),
        (
            "inputs",
            "unknown reference 'inputs' (use <stage>.status, " + HELP_TAIL + " at column 1",
            0,
        ),
        ("1 in 2", "expected a list or a reference after 'in' at column 6", 5),
        ("1 in [a.status]", "list items must be literals at column 7", 6),
        ("1 in [1 2]", "expected ',' or ']' at column 9", 8),
        ("1 == 1 == 1", "unexpected '==' at column 8", 7),
        ("a.status not 'x'", "unexpected 'not' at column 10", 9),
        ("and", "unexpected 'and' at column 1", 0),
    ],
)
def test_parse_errors_carry_message_and_position(text: str, message: str, position: int) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    err = info.value
    assert (err.message, err.position, err.text) == (message, position, text)
    assert str(err) == message
    assert err.column == position + 1
    assert err.caret() == f"{text}\n{' ' * position}^"


def test_rejects_overlong_conditions() -> None:
    text = "true or " * (MAX_LENGTH // 8) + "true"
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert info.value.position == MAX_LENGTH
    assert "longer than" in info.value.message


@pytest.mark.parametrize(
    "text",
    [
        "(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1),
        "not " * (MAX_DEPTH + 1) + "true",
        "!" * 400 + "true",
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "(" * 900,
    ],
)
def test_deep_nesting_is_a_condition_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert "nests deeper than" in info.value.message


def test_nesting_up_to_the_limit_parses() -> None:
    text = "(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH
    assert parse_condition(text).evaluate({}) is True
    assert parse_condition("not " * MAX_DEPTH + "true").evaluate({}) is True


# -- hostile input ------------------------------------------------------------------------------

_PIECES = [
    "a.status",
    "b.outputs.x",
    "inputs.task",
    "inputs",
    "a",
    "a.",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "and",
    "or",
    "not",
    "in",
    "&&",
    "||",
    "!",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'s'",
    '"q',
    "'\\",
    "1",
    "-2.5",
    "1e9",
    "true",
    "NULL",
    " ",
    "@",
    ".",
]
_CTX_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def _evaluate_if_parsed(text: str, ctx: dict[str, Any]) -> None:
    try:
        cond = parse_condition(text)
    except ConditionError as exc:
        assert 0 <= exc.position <= max(len(text), MAX_LENGTH)
        return
    assert isinstance(cond.evaluate(ctx), bool)
    assert isinstance(cond.stage_refs(), frozenset)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_condition_errors(text: str) -> None:
    _evaluate_if_parsed(text, CTX)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=40).map(" ".join),
    st.dictionaries(
        st.sampled_from(["a", "b", "inputs"]),
        st.fixed_dictionaries({"status": _CTX_VALUES, "outputs": _CTX_VALUES}),
    ),
)
def test_token_soup_raises_only_condition_errors_and_evaluates_safely(
    text: str, ctx: dict[str, Any]
) -> None:
    _evaluate_if_parsed(text, ctx)
