"""Every broken agent file in ``corpus/`` is rejected with exactly the problems in its
``.expected`` file (one ``str(Problem)`` per line, the file named by its basename)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.agents.parse import parse_agent_text
from stageflow.errors import SpecError, SpecErrors

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.md"))


def test_the_corpus_has_an_expectation_for_every_file_and_no_strays() -> None:
    assert len(CASES) >= 20
    expected = {p.stem for p in CORPUS.glob("*.expected")}
    assert expected == {p.stem for p in CASES}


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_broken_agent_file_is_reported_exactly(case: Path) -> None:
    text = case.read_bytes().decode("utf-8")
    with pytest.raises(SpecError) as info:
        parse_agent_text(text, source=case.name, layer="project")
    exc = info.value
    problems = exc.problems if isinstance(exc, SpecErrors) else [exc.problem]
    got = [str(p) for p in problems]
    want = case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert got == want
    assert all(p.file == case.name and p.line is not None for p in problems)
