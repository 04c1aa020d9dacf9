"""What ``stageflow profiles`` and the ``stageflow://profiles`` resource show.

One entry per agent x task type x model: the kept counts and figures (``profiles`` table), the
recency-weighted success rate, the confidence, the expected success ``model: auto`` compares
with the threshold, how often the model was explored, whether exploration dropped it, and a
sentence saying what that means for the next choice.
"""

from __future__ import annotations

import time

from pydantic import Field

from stageflow.base import Model
from stageflow.learning import scoring
from stageflow.learning.book import ProfileBook
from stageflow.learning.config import LearningConfig
from stageflow.learning.explore import dropped, expected_success, wilson_upper
from stageflow.learning.stats import SUCCESS
from stageflow.store.profiles import ProfileRow

__all__ = ["ProfileView", "ProfilesResult", "profiles_result"]


class ProfileView(Model):
    agent: str
    task_type: str
    model: str
    executions: int
    successes: int = Field(description="passed, or approved without being sent back")
    reworks: int
    failures: int
    success_rate: float = Field(description="recency-weighted (last 7 days weigh 3x)")
    expected_success: float = Field(description="what model: auto compares to the threshold")
    confidence: float = Field(description="min(1, executions / 20)")
    tokens_mean: float
    tokens_p90: float
    cost_mean_usd: float
    cost_p90_usd: float
    duration_mean_s: float
    last_at: float
    explored: int = Field(description="attempts that were explorations")
    clears_threshold: bool
    dropped: bool = Field(description="failing: no longer explored for this agent and task")
    why: str


class ProfilesResult(Model):
    profiles: list[ProfileView]
    success_threshold: float
    explore_share: float
    models: list[str] = Field(description="what model: auto chooses from")
    samples: int = Field(description="attempts the profiles are made of")


def _why(row: ProfileRow, rate: float, expected: float, gone: bool, cfg: LearningConfig) -> str:
    head = (
        f"{row.model} for {row.agent} on {row.task_type}: {row.successes} of {row.executions} "
        f"succeeded"
    )
    t = cfg.success_threshold
    if expected >= t:
        verdict = f"expected {expected:.2f} clears the threshold {t:.2f}: auto may choose it"
    else:
        verdict = f"expected {expected:.2f} is below the threshold {t:.2f}: auto passes it over"
    if gone:
        upper = wilson_upper(rate, row.executions)
        verdict += f"; dropped from exploration (95% upper bound {upper:.2f})"
    return f"{head}; {verdict}"


def profiles_result(
    rows: list[ProfileRow],
    book: ProfileBook,
    config: LearningConfig,
    *,
    agent: str | None = None,
    task_type: str | None = None,
    now: float | None = None,
) -> ProfilesResult:
    """The read model, filtered by ``agent`` and ``task_type`` when given."""
    at = time.time() if now is None else now
    out = []
    for row in rows:
        if (agent is not None and row.agent != agent) or (
            task_type is not None and row.task_type != task_type
        ):
            continue
        samples = book.key(row.agent, row.task_type, row.model)
        rate = scoring.expertise(((s.at, s.result == SUCCESS) for s in samples), at)
        rate = 0.0 if rate is None else rate
        expected = expected_success(rate, row.executions)
        gone = dropped(rate, row.executions, config.success_threshold)
        out.append(
            ProfileView(
                agent=row.agent,
                task_type=row.task_type,
                model=row.model,
                executions=row.executions,
                successes=row.successes,
                reworks=row.reworks,
                failures=row.failures,
                success_rate=round(rate, 4),
                expected_success=round(expected, 4),
                confidence=round(scoring.confidence(row.executions), 4),
                tokens_mean=row.tokens_mean,
                tokens_p90=row.tokens_p90,
                cost_mean_usd=round(row.cost_mean_usd, 6),
                cost_p90_usd=round(row.cost_p90_usd, 6),
                duration_mean_s=round(row.duration_mean_s, 3),
                last_at=row.last_at,
                explored=sum(1 for s in samples if s.explored),
                clears_threshold=expected >= config.success_threshold,
                dropped=gone,
                why=_why(row, rate, expected, gone, config),
            )
        )
    return ProfilesResult(
        profiles=out,
        success_threshold=config.success_threshold,
        explore_share=config.explore_share,
        models=list(config.models),
        samples=len(book),
    )
