"""The offline runner: deterministic, role-shaped, labelled artifacts and outputs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow.subagents.offline.runner import OFFLINE_MARKER, OfflineRunner
from tests.subagents.factories import TASK, agent_request, artifact

pytestmark = pytest.mark.anyio

# role -> (produces, headings or phrases each artifact must contain)
ROLES: dict[str, tuple[list[str], list[str]]] = {
    "architect": (
        ["design"],
        ["## Context", "## Decision", "## Components", "## Risks", "## Plan"],
    ),
    "developer": (["patch_summary"], ["## Files touched", "## Changes", "edits no files"]),
    "tester": (["test_report"], ["## Results", "| **total** |", "Coverage: 87%"]),
    "reviewer": (["review"], ["## Findings", "## Verdict", "Approved."]),
    "security-auditor": (["security_findings"], ["## Findings", "Critical findings: 0"]),
    "pentester": (["pentest_report"], ["## Findings", "Total findings: 1"]),
    "devops": (["deploy_plan"], ["nothing was deployed", "## Rollback"]),
    "release-manager": (
        ["changelog", "release_notes"],
        ["Prepared locally, nothing was deployed."],
    ),
    "documenter": (["docs"], ["## Overview", "## Usage", "## Reference"]),
    "editor": (["guide"], ["## Overview"]),
    "frontend-developer": (["frontend_summary"], ["## Files touched"]),
    "investigator": (["root_cause"], ["## Symptoms", "## Root cause", "## Fix"]),
    "data-wrangler": (["notes", "summary"], ["## Summary", "agent `data-wrangler`"]),
}


async def test_same_request_gives_identical_result(tmp_path: Path) -> None:
    request = agent_request(tmp_path, artifacts=[artifact("intake", "brief", 1, "# Brief\n")])
    first = await OfflineRunner().run(request)
    second = await OfflineRunner().run(request.model_copy())
    assert first == second


async def test_content_depends_on_task_stage_and_attempt(tmp_path: Path) -> None:
    runner = OfflineRunner()
    base = await runner.run(agent_request(tmp_path, agent="developer", produces=["patch"]))
    other_task = await runner.run(
        agent_request(tmp_path, agent="developer", produces=["patch"], task="Export invoices")
    )
    other_attempt = await runner.run(
        agent_request(tmp_path, agent="developer", produces=["patch"], attempt=2)
    )
    assert base.artifacts["patch"] != other_task.artifacts["patch"]
    assert base.artifacts["patch"] != other_attempt.artifacts["patch"]
    assert "export_invoices/core.py" in other_task.artifacts["patch"]


@pytest.mark.parametrize("role", sorted(ROLES))
async def test_every_role_writes_each_produced_artifact_labelled_offline(
    tmp_path: Path, role: str
) -> None:
    produces, expected = ROLES[role]
    result = await OfflineRunner().run(
        agent_request(tmp_path, agent=role, stage="work", produces=produces)
    )
    assert result.status == "passed"
    assert result.runner == "offline"
    assert result.model == "offline"
    assert result.outputs["offline"] is True
    assert result.summary.startswith("[offline]")
    assert sorted(result.artifacts) == sorted(produces)
    for name, text in result.artifacts.items():
        assert text.splitlines()[0] == OFFLINE_MARKER
        assert TASK in text
        assert name in text.splitlines()[2]  # the title names the artifact
        for phrase in expected:
            assert phrase in text, f"{role}/{name} lacks {phrase!r}"


@pytest.mark.parametrize(
    ("role", "name", "title", "phrase"),
    [
        ("editor", "editorial_review", "# Editorial review", "## Verdict"),
        ("developer", "revert_plan", "# Revert plan", "no code was changed"),
    ],
)
async def test_artifact_name_refines_the_role_shape(
    tmp_path: Path, role: str, name: str, title: str, phrase: str
) -> None:
    result = await OfflineRunner().run(agent_request(tmp_path, agent=role, produces=[name]))
    text = result.artifacts[name]
    assert text.splitlines()[2].startswith(title)
    assert phrase in text


async def test_release_manager_titles_follow_the_artifact_kind(tmp_path: Path) -> None:
    result = await OfflineRunner().run(
        agent_request(tmp_path, agent="release-manager", produces=["changelog", "release_notes"])
    )
    assert result.artifacts["changelog"].splitlines()[2].startswith("# Changelog")
    assert result.artifacts["release_notes"].splitlines()[2].startswith("# Release notes")


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("reviewer", {"approved": True, "offline": True}),
        ("code_reviewer", {"approved": True, "offline": True}),
        ("security-auditor", {"critical_findings": 0, "findings": 2, "offline": True}),
        ("pentester", {"findings": 1, "offline": True}),
        ("editor", {"approved": True, "offline": True}),
        ("developer", {"offline": True}),
        ("architect", {"offline": True}),
    ],
)
async def test_structured_outputs_fit_the_role(
    tmp_path: Path, role: str, expected: dict[str, object]
) -> None:
    result = await OfflineRunner().run(agent_request(tmp_path, agent=role, produces=["out"]))
    assert result.outputs == expected


async def test_tester_outputs_pass_the_gate_and_match_the_report(tmp_path: Path) -> None:
    result = await OfflineRunner().run(
        agent_request(tmp_path, agent="tester", stage="tests", produces=["test_report"])
    )
    outputs = result.outputs
    assert outputs["passed"] is True
    assert outputs["coverage"] == 0.87
    assert isinstance(outputs["tests_run"], int)
    assert outputs["tests_run"] > 0
    n = outputs["tests_run"]
    assert f"| **total** | {n} | {n} | 0 | 0 |" in result.artifacts["test_report"]


async def test_upstream_artifacts_are_referenced_by_name_and_version(tmp_path: Path) -> None:
    upstream = [
        artifact("architecture", "design", 3, "> [offline] marker\n\n# Design: token bucket\n"),
        artifact("tests", "test_report", 1, "# Test report\n"),
    ]
    result = await OfflineRunner().run(
        agent_request(
            tmp_path, agent="reviewer", stage="review", produces=["review"], artifacts=upstream
        )
    )
    text = result.artifacts["review"]
    assert "`architecture.design` v3: Design: token bucket" in text
    assert "`tests.test_report` v1: Test report" in text


async def test_rework_quotes_feedback_and_differs_from_previous(tmp_path: Path) -> None:
    runner = OfflineRunner()
    first = await runner.run(agent_request(tmp_path))
    previous = [artifact("architecture", "design", 1, first.artifacts["design"])]
    feedback = "Use a sliding window.\nAlso cover IPv6 clients."
    rework = await runner.run(
        agent_request(tmp_path, attempt=2, kind="rework", feedback=feedback, previous=previous)
    )
    text = rework.artifacts["design"]
    assert text != first.artifacts["design"]
    assert "## Changes after review" in text
    assert "> Use a sliding window.\n> Also cover IPv6 clients." in text
    assert "Compared with v1" in text
    assert "Address the review feedback first: Use a sliding window." in text
    assert "reworked after review" in rework.summary
    assert "## Changes after review" not in first.artifacts["design"]


async def test_usage_is_simulated_from_sizes_and_costs_nothing(tmp_path: Path) -> None:
    runner = OfflineRunner()
    small = await runner.run(agent_request(tmp_path))
    big_input = artifact("intake", "brief", 1, "x" * 40_000)
    big = await runner.run(agent_request(tmp_path, artifacts=[big_input]))
    assert small.usage.cost_usd == 0.0
    assert small.usage.requests == 1
    assert big.usage.input_tokens - small.usage.input_tokens >= 10_000
    out_chars = len(small.artifacts["design"]) + len(small.summary)
    assert small.usage.output_tokens == out_chars // 4


async def test_delay_is_cancellable(tmp_path: Path) -> None:
    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            await OfflineRunner(delay=60).run(agent_request(tmp_path))
    assert scope.cancelled_caught
