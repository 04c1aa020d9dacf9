"""CLI: ``stageflow knowledge search|show|reindex`` (human output, ``--json``, exit codes), and
what runs leave in the knowledge base (artifacts, recorded decisions)."""

from __future__ import annotations

import pytest

from stageflow.knowledge.views import DocumentView, LookupResult, ReindexView
from tests.cli.harness import Cli, Script

GUIDE = """\
---
title: Database migrations
tags: [sql, release]
---
# Database migrations

## Numbering
Migrations are numbered files; never edit one that was released.

## Rollback
Every migration ships with a tested rollback script.
"""

PATTERN = """\
# Outbox pattern

Write the event and the state change in one transaction; a relay publishes the outbox.
"""


@pytest.fixture
def kb(cli: Cli) -> Cli:
    root = cli.project / ".stageflow" / "knowledge"
    (root / "guidelines").mkdir(parents=True)
    (root / "patterns").mkdir()
    (root / "guidelines" / "migrations.md").write_text(GUIDE, encoding="utf-8")
    (root / "patterns" / "outbox.md").write_text(PATTERN, encoding="utf-8")
    return cli


def test_search_prints_ranked_hits_with_file_and_lines(kb: Cli) -> None:
    result = kb.ok("knowledge", "search", "rollback script")
    first = result.out.splitlines()[1]
    assert first.startswith("1. Database migrations > Rollback [guideline]")
    assert ".stageflow/knowledge/guidelines/migrations.md:10-11" in first
    assert "(id: guidelines/migrations)" in first
    assert "[rollback]" in result.out.lower()


def test_search_json_is_the_model_the_mcp_tool_returns(kb: Cli) -> None:
    result = kb.ok("knowledge", "search", "outbox relay", "--json")
    found = LookupResult.model_validate_json(result.out)
    assert [h.id for h in found.results][:1] == ["patterns/outbox"]
    assert found.results[0].type == "pattern"
    assert found.results[0].uri == "stageflow://knowledge/patterns%2Foutbox"


def test_search_filters_by_type_and_tag(kb: Cli) -> None:
    by_type = LookupResult.model_validate_json(
        kb.ok("knowledge", "search", "transaction migrations", "--type", "pattern", "--json").out
    )
    by_tag = LookupResult.model_validate_json(
        kb.ok("knowledge", "search", "transaction migrations", "--tag", "sql", "--json").out
    )
    assert [h.id for h in by_type.results] == ["patterns/outbox"]
    assert [h.id for h in by_tag.results] == ["guidelines/migrations"]


@pytest.mark.parametrize("query", ['"unbalanced', "NEAR(a b) AND *", "x" * 10_240, "", "ü🚀"])
def test_hostile_queries_exit_zero(kb: Cli, query: str) -> None:
    result = kb.ok("knowledge", "search", query)
    assert result.out.strip()


def test_a_search_without_hits_says_so_and_exits_zero(kb: Cli) -> None:
    result = kb.ok("knowledge", "search", "kubernetes helm chart", "--mode", "bm25")
    assert result.out.startswith("no knowledge matches 'kubernetes helm chart'")


def test_bad_limit_is_a_usage_error(kb: Cli) -> None:
    result = kb("knowledge", "search", "rollback", "--limit", "0")
    assert result.code == 2
    assert "limit must be between 1 and 50" in result.err


def test_unknown_type_is_refused_by_the_parser(kb: Cli) -> None:
    with pytest.raises(SystemExit) as exc:
        kb("knowledge", "search", "rollback", "--type", "recipe")
    assert exc.value.code == 2


def test_show_prints_the_document_and_json_gives_its_model(kb: Cli) -> None:
    human = kb.ok("knowledge", "show", "guidelines/migrations")
    as_json = DocumentView.model_validate_json(
        kb.ok("knowledge", "show", "guidelines/migrations", "--json").out
    )
    assert human.out.startswith("guidelines/migrations: Database migrations [guideline]")
    assert GUIDE in human.out  # the file as written, so hit line ranges point into it
    assert as_json.title == "Database migrations"
    assert as_json.tags == ["sql", "release"]
    assert as_json.body.startswith("# Database migrations")
    assert as_json.body_line == 5


def test_show_of_an_unknown_id_exits_3_naming_close_ids(kb: Cli) -> None:
    result = kb("knowledge", "show", "guidelines/migration")
    assert result.code == 3
    assert "guidelines/migrations" in result.err


def test_reindex_rebuilds_and_search_follows_file_changes(kb: Cli) -> None:
    report = ReindexView.model_validate_json(kb.ok("knowledge", "reindex", "--json").out)
    assert report.added == 2 and report.errors == []
    (kb.project / ".stageflow" / "knowledge" / "patterns" / "outbox.md").unlink()
    gone = LookupResult.model_validate_json(
        kb.ok("knowledge", "search", "outbox", "--mode", "bm25", "--json").out
    )
    again = kb.ok("knowledge", "reindex")
    assert gone.results == []
    assert again.out.startswith("knowledge index rebuilt in ")
    assert ": 0 added, 1 updated, 0 removed, 0 unchanged" in again.out  # rebuilt from the file


# -- what runs leave behind ---------------------------------------------------------------


def test_a_passed_stage_marking_a_decision_writes_a_decision_file_that_search_finds(
    kb: Cli, script: Script
) -> None:
    script(
        {
            "architecture": {
                "outputs": {"decision": {"title": "Use SQLite for run state", "status": "accepted"}}
            }
        }
    )
    view = kb.run("feature_development", task="Persist workflow runs across restarts")
    decisions = kb.project / ".stageflow" / "knowledge" / "decisions"
    files = sorted(p.name for p in decisions.iterdir())
    found = LookupResult.model_validate_json(
        kb.ok("knowledge", "search", "sqlite run state", "--type", "decision", "--json").out
    )
    artifacts = LookupResult.model_validate_json(
        kb.ok("knowledge", "search", "persist workflow runs", "--type", "artifact", "--json").out
    )
    assert files == ["0001-use-sqlite-for-run-state.md"]
    text = (decisions / files[0]).read_text(encoding="utf-8")
    assert text.startswith("---\ntype: decision\nid: decisions/0001-use-sqlite-for-run-state\n")
    assert f"run: {view.run_id}\nstage: architecture\n" in text
    assert [h.id for h in found.results] == ["decisions/0001-use-sqlite-for-run-state"]
    assert found.results[0].status == "accepted"
    assert f"run/{view.run_id}/architecture/design" in {h.id for h in artifacts.results}


def test_a_stage_without_the_decision_flag_writes_no_decision(kb: Cli) -> None:
    kb.run("feature_development", task="Persist workflow runs across restarts")
    assert not (kb.project / ".stageflow" / "knowledge" / "decisions").exists()


def test_search_mode_and_reindex_report_the_vectors(kb: Cli) -> None:
    report = ReindexView.model_validate_json(kb.ok("knowledge", "reindex", "--json").out)
    assert report.model is not None and report.model.startswith("wordllama/")
    assert report.embedded == 3 and report.reused == 0
    found = LookupResult.model_validate_json(
        kb.ok("knowledge", "search", "publish events reliably", "--mode", "vector", "--json").out
    )
    assert found.mode == "vector" and found.results[0].id == "patterns/outbox"
    assert found.results[0].found_by == ["vector"]
    text = kb.ok("knowledge", "search", "relay publishes the outbox").out
    assert "(id: patterns/outbox) found by bm25+vector" in text


def test_a_vector_mode_without_embeddings_exits_2_saying_why(kb: Cli) -> None:
    (kb.project / ".stageflow" / "config.toml").write_text(
        '[knowledge]\nembeddings = "none"\n', encoding="utf-8"
    )
    result = kb("knowledge", "search", "rollback", "--mode", "hybrid")
    assert result.code == 2
    assert "embeddings is 'none'" in result.err and "mode 'bm25'" in result.err
    assert kb.ok("knowledge", "search", "rollback").out.startswith("1 result(s)")
