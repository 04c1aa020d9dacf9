"""Which files are knowledge: the knowledge folder, configured globs and .kogral."""

from __future__ import annotations

from pathlib import Path

from stageflow.config import load_settings
from stageflow.errors import Problem
from stageflow.knowledge.sources import (
    classify,
    glob_match,
    knowledge_files,
    knowledge_patterns,
    knowledge_roots,
)
from tests.knowledge.conftest import WriteFile

CONFIG = '[knowledge]\npaths = ["docs/adr/**/*.md"]\n'


def _rel(project: Path, files: list[tuple[Path, str]]) -> list[tuple[str, str]]:
    return [(p.relative_to(project).as_posix(), kind) for p, kind in files]


def test_files_come_from_the_knowledge_folder_config_globs_and_kogral(
    project: Path, write: WriteFile
) -> None:
    write(".stageflow/config.toml", CONFIG)
    write(".stageflow/knowledge/guidelines/logging.md", "# Logging\n")
    write(".stageflow/knowledge/notes.txt", "not markdown")
    write("docs/adr/0001-record.md", "# 1. Record\n")
    write("docs/adr/old/0000-older.md", "# 0. Older\n")
    write("docs/other.md", "# not configured\n")
    write(".kogral/patterns/retry.md", "# Retry\n")
    files = knowledge_files(load_settings(project))
    assert _rel(project, files) == [
        (".kogral/patterns/retry.md", "kogral"),
        (".stageflow/knowledge/guidelines/logging.md", "knowledge"),
        ("docs/adr/0001-record.md", "config"),
        ("docs/adr/old/0000-older.md", "config"),
    ]


def test_hidden_files_and_editor_leftovers_are_not_knowledge(
    project: Path, write: WriteFile
) -> None:
    base = ".stageflow/knowledge"
    for name in ("a.md", ".hidden.md", "#a.md#", "a.md~", ".obsidian/x.md", "sub/.#lock.md"):
        write(f"{base}/{name}", "x\n")
    settings = load_settings(project)
    assert _rel(project, knowledge_files(settings)) == [(f"{base}/a.md", "knowledge")]
    assert classify(settings, project / base / ".obsidian/x.md") is None
    assert classify(settings, project / base / "#a.md#") is None


def test_a_file_matched_by_the_knowledge_folder_and_a_glob_belongs_to_the_folder(
    project: Path, write: WriteFile
) -> None:
    write(".stageflow/config.toml", '[knowledge]\npaths = [".stageflow/**/*.md"]\n')
    write(".stageflow/knowledge/a.md", "x\n")
    write(".stageflow/agents/architect.md", "x\n")
    files = _rel(project, knowledge_files(load_settings(project)))
    assert files == [
        (".stageflow/agents/architect.md", "config"),
        (".stageflow/knowledge/a.md", "knowledge"),
    ]


def test_classify_answers_for_paths_that_no_longer_exist(project: Path, write: WriteFile) -> None:
    write(".stageflow/config.toml", CONFIG)
    settings = load_settings(project)
    gone = classify(settings, project / "docs/adr/0009-gone.md")
    assert gone is not None and gone.kind == "config" and gone.id_root is None
    kept = classify(settings, Path(".stageflow/knowledge/x/y.md"))  # relative to the project
    assert kept is not None and kept.kind == "knowledge"
    assert classify(settings, project / "docs/readme.md") is None
    assert classify(settings, project.parent / "elsewhere.md") is None


def test_invalid_globs_are_reported_and_skipped(project: Path, write: WriteFile) -> None:
    write(
        ".stageflow/config.toml",
        '[knowledge]\npaths = ["/etc/**/*.md", "../up/*.md", "", 3, "docs/*.md"]\n',
    )
    problems: list[Problem] = []
    patterns = knowledge_patterns(load_settings(project), problems)
    assert [p.glob for p in patterns if p.kind == "config"] == ["docs/*.md"]
    assert [p.path for p in problems] == [
        "knowledge.paths[0]",
        "knowledge.paths[1]",
        "knowledge.paths[2]",
        "knowledge.paths[3]",
    ]
    assert "must be relative to the project" in problems[0].message
    assert "no '..'" in problems[1].message


def test_roots_are_the_folders_to_watch(project: Path, write: WriteFile) -> None:
    write(".stageflow/config.toml", '[knowledge]\npaths = ["docs/adr/**/*.md", "*.md"]\n')
    roots = knowledge_roots(load_settings(project))
    assert roots == [
        project / ".stageflow/knowledge",
        project / "docs/adr",
        project,
        project / ".kogral",
    ]


def test_glob_match_handles_double_star_and_classes() -> None:
    assert glob_match("docs/adr/**/*.md", "docs/adr/0001-x.md")
    assert glob_match("docs/adr/**/*.md", "docs/adr/a/b/0001-x.md")
    assert not glob_match("docs/adr/**/*.md", "docs/adrs/0001-x.md")
    assert not glob_match("docs/*.md", "docs/a/b.md")
    assert glob_match("docs/[0-9]*.md", "docs/1-a.md")
    assert not glob_match("docs/[!0-9]*.md", "docs/1-a.md")
    assert glob_match("docs/?.md", "docs/a.md")
    assert not glob_match("docs/a.md", "docs/a_md")  # "." is literal
