"""The profiles learning from real runs: the ``stageflow`` command in-process, the anthropic
runner and the real ``anthropic`` client over HTTP against the Messages-API stand-in.

1. Every haiku attempt fails: ``model: auto`` starts on the agent's default (haiku), escalates
   on the retry, and then stops choosing haiku for the task type apart from the bounded
   exploration (none at all once haiku is dropped); ``profiles --json`` says why.
2. Forecast accuracy: after 10 runs of a template, the p50 of ``estimate --json`` is within
   25% of the actual cost of the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stageflow.models.routing import DEFAULT_ALIASES
from tests.standin import StandIn
from tests.standin.agent import AgentConfig, StageAgent
from tests.standin.project import make_project
from tests.standin.wire import Json
from tests.subagents.anthropic_harness import ApiProject, stage_of, use_standin

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

HAIKU, SONNET = DEFAULT_ALIASES["haiku"], DEFAULT_ALIASES["sonnet"]

CODER = """\
---
name: coder
description: Implements features in the codebase.
tools: Read, Write, Glob
model: haiku
---
You implement what the task asks and report a patch summary.
"""

AUTO = """\
name: auto_build
description: one implementation stage whose model the profiles choose
stages:
  - id: build
    agent: coder
    model: auto
    task_type: feature
    produces: [patch_summary]
    on_failure: {retry: {max_attempts: 2, backoff: 0}}
"""

EXPLORE_SHARE = 0.3
LEARNING = f"""\
[learning]
models = ["haiku", "sonnet"]
success_threshold = 0.8
explore_share = {EXPLORE_SHARE}
"""

TWO = """\
name: two_step
description: implement, then review
stages:
  - id: implementation
    agent: developer
    produces: [patch_summary]
  - id: review
    agent: reviewer
    depends_on: [implementation]
    needs: [implementation.patch_summary]
    produces: [review]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProject]:
    failing = StageAgent(AgentConfig(status="failed"))

    def haiku_fails(body: Json) -> Any:
        return failing.turn(body) if body.get("model") == HAIKU else None

    with StandIn(respond=haiku_fails) as api:
        use_standin(monkeypatch, api.base_url)
        root = make_project(tmp_path / "project")
        agents = root / ".stageflow" / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        (agents / "coder.md").write_text(CODER, encoding="utf-8")
        yield ApiProject(root, api)


def test_model_auto_stops_choosing_a_model_that_always_fails(project: ApiProject) -> None:
    project.write_template(AUTO)
    project.write_config(LEARNING)
    attempts: list[tuple[int, str | None, str, bool]] = []  # run, model, rule, outcome ok
    for n in range(10):
        view = project.run("auto_build", "--budget", "5")
        assert view.status == "completed", (n, view.reason, stage_of(view, "build").history)
        assert view.spent_usd <= 5.0  # auto never spends past the cap
        for a in stage_of(view, "build").history:
            model = (a.choice or {}).get("model") or {}
            attempts.append((n, a.model_resolved, str(model.get("rule")), a.outcome == "passed"))

    # every haiku attempt failed, every sonnet attempt passed
    assert {(m, ok) for _, m, _, ok in attempts} <= {(HAIKU, False), (SONNET, True)}
    # run 1: no history, so the agent's default (haiku); its retry escalates to sonnet
    assert [(m, r) for n, m, r, _ in attempts if n == 0] == [
        (HAIKU, "no history for the task type: the default"),
        (SONNET, "no history; the default failed here: the next model up"),
    ]
    later = [(n, m, r) for n, m, r, _ in attempts if n > 0]
    haiku_later = [(n, r) for n, m, r in later if m == HAIKU]
    # after it failed, haiku runs only when exploring, and never once dropped (3 failures)
    assert all(r == "explore" for _, r in haiku_later), haiku_later
    haiku_runs = [0] + [n for n, _ in haiku_later]
    if len(haiku_runs) >= 3:
        assert not [n for n, m, _ in later if m == HAIKU and n > haiku_runs[2]]
    # the exploration is bounded: at most the share (plus the attempt that reached it)
    explored = sum(1 for _, _, r in later if r == "explore")
    assert explored <= EXPLORE_SHARE * len(later) + 1, later
    # the last run starts on sonnet, chosen because it clears the threshold (or explores)
    assert next((m, r) for n, m, r in later if n == 9) in {
        (SONNET, "the cheapest model clearing the success threshold"),
        (HAIKU, "explore"),
    }

    shown = project("profiles", "--agent", "coder", "--json")
    assert shown.code == 0, shown.err
    result = shown.json()
    rows = {p["model"]: p for p in result["profiles"]}
    haiku, sonnet = rows[HAIKU], rows[SONNET]
    assert haiku["task_type"] == sonnet["task_type"] == "feature"
    n_haiku = sum(1 for _, m, _, _ in attempts if m == HAIKU)
    assert (haiku["executions"], haiku["successes"], haiku["failures"]) == (n_haiku, 0, n_haiku)
    assert haiku["clears_threshold"] is False and "auto passes it over" in haiku["why"]
    assert haiku["dropped"] is (n_haiku >= 3)
    if n_haiku >= 3:
        assert "dropped from exploration" in haiku["why"]
    n_sonnet = sum(1 for _, m, _, _ in attempts if m == SONNET)
    assert (sonnet["executions"], sonnet["successes"]) == (n_sonnet, n_sonnet) and n_sonnet >= 10
    assert sonnet["clears_threshold"] is True and "auto may choose it" in sonnet["why"]
    assert result["explore_share"] == EXPLORE_SHARE
    # status says why, in words
    status = project("status", view.run_id)
    assert "coder on" in status.out and "success over" in status.out, status.out


def test_the_forecast_after_ten_runs_is_within_a_quarter_of_the_next_run(
    project: ApiProject,
) -> None:
    project.write_template(TWO)
    for n in range(10):
        view = project.run("two_step", task=f"Add a CSV export of the report, variant {n}")
        assert view.status == "completed", (n, view.reason)
    estimate = project("estimate", "two_step", "--task", "Add a CSV export, variant 10", "--json")
    assert estimate.code == 0, estimate.err
    fc = estimate.json()
    assert [s["basis"] for s in fc["stages"]] == ["history", "history"]
    view = project.run("two_step", task="Add a CSV export, variant 10")
    assert view.status == "completed"
    actual = view.spent_usd
    error = abs(fc["p50_usd"] - actual) / actual
    log.warning(
        "forecast accuracy: p50 $%.6f vs actual $%.6f: error %.1f%%",
        fc["p50_usd"],
        actual,
        100 * error,
    )
    assert error <= 0.25, (fc["p50_usd"], actual)
    assert fc["p90_usd"] >= fc["p50_usd"]
