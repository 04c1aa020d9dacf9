"""Parsing knowledge files: front matter, titles, ids, types, ADR formats and statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.errors import Problem
from stageflow.knowledge.documents import (
    is_adr,
    normalize_status,
    normalize_tags,
    parse_document,
    slug_id,
)

CORPUS = Path(__file__).with_name("corpus")
ROOT = ".stageflow/knowledge"


def test_front_matter_gives_id_title_type_tags_and_the_body_starts_after_it() -> None:
    text = "---\nid: guides/errors\ntitle: Errors\ntype: Guideline\ntags: [API, errors]\n---\n# X\n"
    doc = parse_document(text, path=f"{ROOT}/a.md", root_hint=ROOT)
    assert (doc.doc_id, doc.title, doc.type, doc.tags) == (
        "guides/errors",
        "Errors",
        "guideline",
        ("api", "errors"),
    )
    assert doc.body == "# X\n"
    assert doc.body_line == 7
    assert text.split("\n")[doc.body_line - 1] == "# X"


def test_without_front_matter_the_id_is_the_path_below_the_root_and_the_title_the_first_h1() -> (
    None
):
    doc = parse_document(
        "Intro line\n\n# Error Handling Rules\n\ntext\n",
        path=f"{ROOT}/Guidelines/Error Handling.md",
        root_hint=ROOT,
    )
    assert doc.doc_id == "guidelines/error-handling"
    assert doc.title == "Error Handling Rules"
    assert doc.type == "guideline"  # the folder name
    assert doc.body_line == 1


def test_the_title_falls_back_to_the_file_stem_and_the_type_to_note() -> None:
    doc = parse_document("just text\n", path="misc/release_checklist.md", root_hint=None)
    assert doc.title == "release checklist"
    assert doc.type == "note"
    assert doc.doc_id == "misc/release_checklist"


def test_a_heading_inside_a_code_block_is_not_the_title() -> None:
    doc = parse_document("```\n# not a title\n```\n\n# Real title\n", path="n.md")
    assert doc.title == "Real title"


def test_bad_front_matter_is_reported_and_read_as_body() -> None:
    problems: list[Problem] = []
    text = "---\ntitle: [unclosed\n---\n# Heading\n"
    doc = parse_document(text, path="k/bad.md", problems=problems)
    assert doc.body == text
    assert doc.body_line == 1
    assert doc.title == "Heading"
    assert len(problems) == 1
    assert problems[0].file == "k/bad.md"
    assert problems[0].message.startswith("invalid YAML in front matter")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\n- a list\n---\nbody\n", "front matter is not a mapping of keys; read as body"),
        ("---\ntitle: x\nno closing fence\n", "front matter has no closing '---' line"),
    ],
)
def test_front_matter_that_is_not_a_mapping_or_not_closed_is_body(text: str, message: str) -> None:
    problems: list[Problem] = []
    doc = parse_document(text, path="n.md", problems=problems)
    assert doc.body == text
    assert [p.message for p in problems] == [message]


def test_an_unknown_type_is_reported_and_detection_takes_over() -> None:
    problems: list[Problem] = []
    doc = parse_document("---\ntype: recipe\n---\ntext\n", path="patterns/x.md", problems=problems)
    assert doc.type == "pattern"
    assert problems == [
        Problem(
            "unknown type 'recipe'; expected one of guideline, pattern, adr, decision, note, "
            "artifact",
            file="patterns/x.md",
            path="type",
        )
    ]


def test_crlf_and_a_byte_order_mark_are_normalised() -> None:
    doc = parse_document("\ufeff---\r\ntitle: T\r\n---\r\nbody\r\n", path="n.md")
    assert doc.title == "T"
    assert doc.body == "body\n"
    assert doc.body_line == 4


def test_adr_tools_records_are_adrs_with_their_status() -> None:
    path = "docs/adr/0003-use-rabbitmq-for-messaging.md"
    doc = parse_document((CORPUS / path).read_text(encoding="utf-8"), path=path)
    assert doc.type == "adr"
    assert doc.status == "superseded"
    assert doc.title == "3. Use RabbitMQ for asynchronous messaging"
    assert doc.doc_id == "docs/adr/0003-use-rabbitmq-for-messaging"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("0001-use-markdown-architectural-decision-records.md", "accepted"),  # MADR 3 front matter
        ("0004-session-tokens-for-the-web-app.md", "rejected"),
        ("0006-use-celery-for-background-jobs.md", "superseded"),  # MADR 2 "* Status:" line
        ("0007-use-arq-for-background-jobs.md", "accepted"),  # status line above the title
    ],
)
def test_madr_records_are_adrs_with_their_status(name: str, status: str) -> None:
    path = f"docs/decisions/{name}"
    doc = parse_document((CORPUS / path).read_text(encoding="utf-8"), path=path)
    assert doc.type == "adr"
    assert doc.status == status


def test_a_stage_decision_keeps_its_front_matter_type_and_status() -> None:
    path = f"{ROOT}/decisions/0002-use-uuidv7-for-new-ids.md"
    text = (CORPUS / "knowledge/decisions/0002-use-uuidv7-for-new-ids.md").read_text("utf-8")
    doc = parse_document(text, path=path, root_hint=ROOT)
    assert (doc.type, doc.status, doc.doc_id) == (
        "decision",
        "proposed",
        "decisions/0002-use-uuidv7-for-new-ids",
    )


def test_guidelines_have_no_status_unless_their_front_matter_gives_one() -> None:
    doc = parse_document("# Logging\n\n## Status\n\nDraft\n", path="guidelines/logging.md")
    assert doc.type == "guideline"
    assert doc.status is None


def test_is_adr_needs_the_madr_or_nygard_sections() -> None:
    assert is_adr("## Context and Problem Statement\n\nx\n")
    assert is_adr("# 1. X\n\n## Status\n\nAccepted\n\n## Context\n\nc\n\n## Decision\n\nd\n")
    assert not is_adr("# Notes\n\n## Context\n\nc\n\n## Decision\n\nd\n")  # no Status


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("Accepted", "accepted"),
        ("**Proposed**", "proposed"),
        ("Superseded by [7. Use Kafka](0007-use-kafka.md)", "superseded"),
        ("superseded by [ADR-0007](0007-x.md)", "superseded"),
        ("Deprecated", "deprecated"),
        ("On hold", "on"),
        ("", None),
    ],
)
def test_normalize_status(raw: str, status: str | None) -> None:
    assert normalize_status(raw) == status


def test_tags_accept_lists_and_comma_strings_and_drop_junk() -> None:
    assert normalize_tags("api, Errors  #http") == ("api", "errors", "http")
    assert normalize_tags(["A", "a", 3, None, True, " "]) == ("a", "3")
    assert normalize_tags({"not": "tags"}) == ()


def test_slug_id_is_stable_and_safe() -> None:
    assert slug_id("docs/ADR/0002 Use Postgres!.md") == "docs/adr/0002-use-postgres"
    assert slug_id("k/notes/x.md", "k") == "notes/x"
    assert slug_id("other/x.md", "k") == "other/x"
    assert slug_id("k/!!!.md", "k") == "untitled"
