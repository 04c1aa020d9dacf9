"""The retrieval test sets: a project built from ``corpus/``, the queries of ``queries.yaml`` and
the paraphrases of ``paraphrases.yaml`` and ``paraphrases_holdout.yaml``, and the metrics (MRR,
recall@5) computed over them in each search mode."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stageflow.knowledge.hybrid import SearchMode
from stageflow.knowledge.index import KnowledgeIndex

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
QUERIES = HERE / "queries.yaml"
PARAPHRASES = HERE / "paraphrases.yaml"
HOLDOUT = HERE / "paraphrases_holdout.yaml"  # never tuned against
K = 5


@dataclass(frozen=True)
class Case:
    query: str
    kind: str
    expected: tuple[str, ...]
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    case: Case
    got: tuple[str, ...]  # the top K doc ids

    @property
    def first_rank(self) -> int | None:
        """1-based rank of the first expected id in the top K, or None."""
        return next((i + 1 for i, d in enumerate(self.got) if d in self.case.expected), None)

    @property
    def recall(self) -> float:
        return sum(1 for e in self.case.expected if e in self.got) / len(self.case.expected)


@dataclass(frozen=True)
class Metrics:
    mrr: float
    recall_at_5: float
    outcomes: tuple[Outcome, ...]

    def misses(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.first_rank != 1 or o.recall < 1]

    def by_kind(self) -> dict[str, tuple[float, float, int]]:
        """kind -> (MRR, recall@5, queries)."""
        kinds: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            kinds.setdefault(o.case.kind, []).append(o)
        return {k: (*_scores(v), len(v)) for k, v in sorted(kinds.items())}

    def render(self) -> str:
        lines = [
            f"retrieval set: {len(self.outcomes)} queries, MRR {self.mrr:.3f}, "
            f"recall@{K} {self.recall_at_5:.3f}"
        ]
        lines += [
            f"  {kind:8} MRR {m:.3f} recall@{K} {r:.3f} ({n} queries)"
            for kind, (m, r, n) in self.by_kind().items()
        ]
        for o in self.misses():
            lines.append(
                f"  rank {o.first_rank or '-'} recall {o.recall:.2f}: {o.case.query!r} "
                f"-> {list(o.got)}"
            )
        return "\n".join(lines)


def _scores(outcomes: list[Outcome]) -> tuple[float, float]:
    mrr = sum(1 / o.first_rank if o.first_rank else 0.0 for o in outcomes) / len(outcomes)
    recall = sum(o.recall for o in outcomes) / len(outcomes)
    return mrr, recall


def load_cases(path: Path = QUERIES) -> list[Case]:
    raw: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Case(
            query=item["query"],
            kind=item.get("kind", "paraphrase"),
            expected=tuple(item["expected"]),
            types=tuple(item.get("types", ())),
            tags=tuple(item.get("tags", ())),
        )
        for item in raw
    ]


def build_project(root: Path) -> Path:
    """A project whose knowledge is the corpus: knowledge/ -> .stageflow/knowledge, docs/ as
    is (through ``[knowledge] paths``), kogral/ -> .kogral."""
    project = root / "project"
    shutil.copytree(CORPUS / "knowledge", project / ".stageflow" / "knowledge")
    shutil.copytree(CORPUS / "docs", project / "docs")
    shutil.copytree(CORPUS / "kogral", project / ".kogral")
    shutil.copy(CORPUS / "config.toml", project / ".stageflow" / "config.toml")
    return project


async def evaluate(
    index: KnowledgeIndex, cases: list[Case], mode: SearchMode | None = None
) -> Metrics:
    outcomes = []
    for case in cases:
        hits = await index.search(case.query, types=case.types, tags=case.tags, limit=K, mode=mode)
        outcomes.append(Outcome(case, tuple(h.doc_id for h in hits)))
    mrr, recall = _scores(outcomes)
    return Metrics(mrr, recall, tuple(outcomes))
