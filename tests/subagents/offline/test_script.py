"""Scripted behaviour of the offline runner: failures, hangs, errors, overrides, env file."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from stageflow.errors import BudgetExceeded, ModelError, SpecError
from stageflow.subagents.offline.runner import SCRIPT_ENV, OfflineRunner, StageScript, load_script
from tests.subagents.factories import agent_request

pytestmark = pytest.mark.anyio


async def test_fail_times_fails_the_first_attempts_then_passes(tmp_path: Path) -> None:
    runner = OfflineRunner(script={"architecture": StageScript(fail_times=2, fail_message="boom")})
    results = [await runner.run(agent_request(tmp_path, attempt=n)) for n in (1, 2, 3)]
    assert [r.status for r in results] == ["failed", "failed", "passed"]
    assert results[0].error == "boom"
    assert results[0].artifacts == {}
    assert results[0].usage.requests == 1  # failed attempts are still counted
    assert results[2].artifacts["design"]


async def test_script_applies_only_to_its_stage(tmp_path: Path) -> None:
    runner = OfflineRunner(script={"other": StageScript(fail_times=5)})
    result = await runner.run(agent_request(tmp_path))
    assert result.status == "passed"


async def test_status_and_outputs_override_the_role(tmp_path: Path) -> None:
    script = StageScript(status="changes_requested", outputs={"approved": False, "note": "x"})
    runner = OfflineRunner(script={"review": script})
    result = await runner.run(
        agent_request(tmp_path, agent="reviewer", stage="review", produces=["review"])
    )
    assert result.status == "changes_requested"
    assert result.outputs == {"approved": False, "note": "x", "offline": True}
    assert "Changes requested." in result.artifacts["review"]


async def test_tester_script_can_fail_the_suite(tmp_path: Path) -> None:
    runner = OfflineRunner(script={"tests": StageScript(outputs={"passed": False})})
    result = await runner.run(
        agent_request(tmp_path, agent="tester", stage="tests", produces=["test_report"])
    )
    assert result.outputs["passed"] is False
    assert "Verdict: FAILED." in result.artifacts["test_report"]


async def test_hang_blocks_until_cancelled(tmp_path: Path) -> None:
    runner = OfflineRunner(script={"architecture": StageScript(hang=True)})
    with anyio.fail_after(5):
        with anyio.move_on_after(0.1) as scope:
            await runner.run(agent_request(tmp_path, attempt=7))
    assert scope.cancelled_caught


async def test_hang_with_fail_times_lets_a_later_attempt_finish(tmp_path: Path) -> None:
    runner = OfflineRunner(script={"architecture": StageScript(hang=True, fail_times=1)})
    with anyio.fail_after(5):
        with anyio.move_on_after(0.1) as scope:
            await runner.run(agent_request(tmp_path, attempt=1))
        assert scope.cancelled_caught
        result = await runner.run(agent_request(tmp_path, attempt=2))
    assert result.status == "passed"


@pytest.mark.parametrize(("kind", "retryable"), [("model_retryable", True), ("model_fatal", False)])
async def test_raise_error_raises_model_error(tmp_path: Path, kind: str, retryable: bool) -> None:
    script = StageScript.model_validate({"raise_error": kind, "fail_message": "overloaded"})
    runner = OfflineRunner(script={"architecture": script})
    with pytest.raises(ModelError) as info:
        await runner.run(agent_request(tmp_path))
    assert info.value.retryable is retryable
    assert "overloaded" in str(info.value)
    assert "architecture" in str(info.value)


async def test_raise_budget_raises_budget_exceeded(tmp_path: Path) -> None:
    runner = OfflineRunner(script={"architecture": StageScript(raise_error="budget")})
    with pytest.raises(BudgetExceeded) as info:
        await runner.run(agent_request(tmp_path, budget_remaining_usd=0.5))
    assert info.value.budget_usd == 0.5
    assert info.value.spent_usd > info.value.budget_usd


async def test_raise_error_with_fail_times_stops_raising_afterwards(tmp_path: Path) -> None:
    script = StageScript(raise_error="model_retryable", fail_times=1)
    runner = OfflineRunner(script={"architecture": script})
    with pytest.raises(ModelError):
        await runner.run(agent_request(tmp_path, attempt=1))
    assert (await runner.run(agent_request(tmp_path, attempt=2))).status == "passed"


async def test_from_env_reads_the_script_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"architecture": {"fail_times": 1, "fail_message": "env says no"}}))
    monkeypatch.setenv(SCRIPT_ENV, str(path))
    runner = OfflineRunner.from_env(delay=0.25)
    assert runner.delay == 0.25
    result = await runner.run(agent_request(tmp_path))
    assert result.status == "failed"
    assert result.error == "env says no"


def test_from_env_without_variable_has_no_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCRIPT_ENV, raising=False)
    assert OfflineRunner.from_env().script == {}


def test_script_with_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": {"fail_times": 1},\n  oops\n}')
    with pytest.raises(SpecError) as info:
        load_script(path)
    assert info.value.problem.file == str(path)
    assert info.value.problem.line == 3


def test_script_with_unknown_key_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"review": {"fail_tims": 1}}))
    with pytest.raises(SpecError) as info:
        load_script(path)
    assert info.value.problem.path == "review.fail_tims"


def test_missing_script_file_is_a_spec_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SCRIPT_ENV, str(tmp_path / "nope.json"))
    with pytest.raises(SpecError) as info:
        OfflineRunner.from_env()
    assert info.value.problem.file == str(tmp_path / "nope.json")
