"""Every broken template in ``corpus/`` yields exactly the problems listed in expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stageflow.errors import SpecErrors
from stageflow.workflows.loader import load_template_file, validate_files

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, list[str]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))
AGENTS = ["architect", "developer", "tester", "reviewer"]
FILES = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".yaml", ".yml", ".toml"))


def test_every_corpus_file_has_expectations_and_vice_versa() -> None:
    assert sorted(EXPECTED) == FILES
    assert len(FILES) >= 12


def test_one_corpus_file_reports_many_problems_together() -> None:
    problems = EXPECTED["many_problems.yaml"]
    assert len(problems) >= 8
    assert len({p.split(": ")[1] for p in problems}) >= 4  # spread over four stages


@pytest.mark.parametrize("name", FILES)
def test_corpus_file_reports_exactly_the_expected_problems(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CORPUS)  # problems name the path as given: the bare file name
    with pytest.raises(SpecErrors) as info:
        load_template_file(Path(name), agent_names=AGENTS)
    assert [str(p) for p in info.value.problems] == EXPECTED[name]
    assert all(p.file == name for p in info.value.problems)


def test_validate_files_reports_the_whole_corpus_without_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(CORPUS)
    problems = validate_files([Path(n) for n in FILES], agent_names=AGENTS).errors
    assert [str(p) for p in problems] == [line for n in FILES for line in EXPECTED[n]]


def test_schema_errors_no_longer_hide_the_cross_stage_errors() -> None:
    """Seven schema errors used to be all a user saw of this file; the six cross-stage errors
    behind them come out in the same pass, every problem in line order."""
    problems = EXPECTED["schema_and_cross_stage.yaml"]
    cross_stage = ("unknown agent", "unknown stage", "does not produce", "undeclared input")
    cross = [p for p in problems if any(word in p for word in cross_stage)]
    cross += [p for p in problems if "rollback stage 'cleanup' does not exist" in p]
    assert (len(problems), len(cross)) == (13, 6)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines)
