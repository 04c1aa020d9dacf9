"""User text becomes a safe FTS5 expression: no operator leaks, nothing raises."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stageflow.knowledge.query import (
    MAX_TERMS,
    focused_query,
    query_groups,
    query_terms,
    to_fts_query,
)

HOSTILE = [
    "",
    "   ",
    '"',
    '""',
    '"unbalanced',
    "(((",
    "a) OR (b",
    "NOT",
    "AND OR NOT NEAR",
    "retry NOT backoff",
    "NEAR(retry backoff, 2)",
    "retry*",
    "^retry",
    "title:retry",
    "{title tags}: retry",
    "- + * ^ : ( ) \" ' ` ~ ! @ # $ % & = [ ] { } | \\ / < > ? , .",
    "'; DROP TABLE knowledge_docs; --",
    "\x00\x01\x02 control",
    "日本語のテキスト 검색 поиск ÄÖÜ",
    "e\u0301te\u0301 naïve café",
    "🙂🚀 emoji only",
    "_",
    "__init__ _private",
    "a" * 10_000,
    "retry " * 2_000,
    ("word" + "\u200b") * 500,
]


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    """An FTS5 table like the index's, to run expressions against."""
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE t USING fts5(title, body, tokenize='porter unicode61 "
        "remove_diacritics 2')"
    )
    db.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [
            ("Retry with backoff", "exponential backoff and jitter"),
            ("Use PostgreSQL", "the database for new services"),
            ("日本語", "テキスト"),
        ],
    )
    yield db
    db.close()


def _run(db: sqlite3.Connection, expr: str) -> list[tuple[int]]:
    return db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY rank", (expr,)).fetchall()


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_gives_a_valid_expression_or_none(fts: sqlite3.Connection, text: str) -> None:
    for mode in ("any", "all"):
        expr = to_fts_query(text, mode=mode)
        if expr is not None:
            _run(fts, expr)  # would raise sqlite3.OperationalError on a syntax error


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_valid_expression_or_none(text: str) -> None:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61')")
        db.execute("INSERT INTO t VALUES ('retry backoff database')")
        for mode in ("any", "all"):
            expr = to_fts_query(text, mode=mode)
            if expr is not None:
                db.execute("SELECT rowid FROM t WHERE t MATCH ?", (expr,)).fetchall()
    finally:
        db.close()


def test_operators_are_searched_as_words_not_applied(fts: sqlite3.Connection) -> None:
    # as FTS5 syntax, "NOT backoff" would exclude row 1; quoted, it cannot
    expr = to_fts_query("retry NOT backoff")
    assert expr == '"retry" OR "backoff"'  # "not" is a stopword here, never an operator
    assert _run(fts, expr) == [(1,)]
    assert to_fts_query("NEAR(retry backoff, 2)") == '"near" OR "retry" OR "backoff" OR "2"'
    assert to_fts_query("title:retry*") == '"title" OR "retry"'


def test_stopwords_are_dropped_unless_nothing_else_is_left() -> None:
    assert query_terms("How should we handle the errors?") == ["handle", "errors"]
    assert query_terms("what is this") == ["what", "is", "this"]


def test_double_quotes_keep_a_phrase_and_an_unbalanced_quote_is_ignored() -> None:
    assert query_terms('use "exponential backoff" for retries') == [
        "exponential backoff",
        "retries",
    ]
    assert query_terms('"exponential backoff') == ["exponential", "backoff"]


def test_abbreviations_widen_into_or_groups(fts: sqlite3.Connection) -> None:
    assert query_groups("db for new services") == ['("db" OR "database")', '"new"', '"services"']
    expr = to_fts_query("postgres db", mode="all")
    assert expr == '("postgres" OR "postgresql") AND ("db" OR "database")'
    assert _run(fts, expr) == [(2,)]


def test_terms_are_unique_and_bounded() -> None:
    text = " ".join(f"word{i}" for i in range(200)) + " word1 word1"
    terms = query_terms(text)
    assert len(terms) == MAX_TERMS
    assert len(set(terms)) == len(terms)
    assert query_terms("x" * 65) == []  # longer than any real word


def test_a_10_kb_query_becomes_a_normal_sized_expression() -> None:
    expr = to_fts_query(" ".join(f"term{i}" for i in range(2000)))
    assert expr is not None
    assert len(expr) < 1000


def test_nothing_searchable_gives_none() -> None:
    for text in ("", "   ", "(((", '""', "*^:", "🙂"):
        assert to_fts_query(text) is None


def test_focused_query_requires_one_of_the_rare_terms_when_common_ones_would_flood() -> None:
    groups = ['"service"', '"outbox"', '"kafka"']
    assert focused_query(groups, [5000, 3, 40], budget=100) == (
        '("outbox" OR "kafka") AND ("service" OR "outbox" OR "kafka")'
    )
    assert focused_query(groups, [50, 3, 40], budget=100) == '"service" OR "outbox" OR "kafka"'
    # even when every term is common, the rarest one is required
    assert focused_query(groups, [5000, 900, 4000], budget=100) == (
        '("outbox") AND ("service" OR "outbox" OR "kafka")'
    )
