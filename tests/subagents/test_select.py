"""Runner selection: command stages vs agent stages, and what each runner name resolves to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stageflow.config import RunnerName
from stageflow.engine.runner import Runner
from stageflow.errors import ModelError, SpecError
from stageflow.subagents.offline.runner import SCRIPT_ENV, OfflineRunner
from stageflow.subagents.select import (
    NO_RUNNER_MESSAGE,
    describe_runner,
    make_runner,
    resolve_runner_name,
)
from tests.subagents.factories import agent_request, command_request, settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with no ``claude`` on it."""
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.fixture
def claude_on_path(empty_path: Path) -> Path:
    claude = empty_path / "claude"
    claude.write_text("#!/bin/sh\nexit 0\n")
    claude.chmod(0o755)
    return claude


async def test_offline_runs_agent_stages_and_commands_go_to_the_command_runner(
    tmp_path: Path,
) -> None:
    runner: Runner = make_runner(settings(tmp_path, "offline"))  # mypy checks the protocol
    assert runner.name == "offline"
    agent = await runner.run(agent_request(tmp_path))
    command = await runner.run(command_request(tmp_path, "echo hi"))
    assert (agent.runner, agent.model) == ("offline", "offline")
    assert (command.runner, command.model) == ("command", None)
    assert command.artifacts == {"output": "hi\n"}


def test_offline_delay_and_command_timeout_come_from_arguments_and_settings(
    tmp_path: Path,
) -> None:
    runner = make_runner(settings(tmp_path, "offline"), offline_delay=0.4)
    agent = runner.agent_runner()
    assert isinstance(agent, OfflineRunner)
    assert agent.delay == 0.4
    assert runner.command.default_timeout == 30.0


async def test_offline_script_from_env_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"architecture": {"fail_times": 1}}))
    monkeypatch.setenv(SCRIPT_ENV, str(script))
    runner = make_runner(settings(tmp_path, "offline"))
    assert (await runner.run(agent_request(tmp_path))).status == "failed"


def test_broken_offline_script_is_reported_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "script.json"
    script.write_text("not json")
    monkeypatch.setenv(SCRIPT_ENV, str(script))
    with pytest.raises(SpecError) as info:
        make_runner(settings(tmp_path, "offline"))
    assert info.value.problem.file == str(script)


async def test_the_anthropic_runner_without_a_key_fails_its_first_agent_stage_clearly(
    tmp_path: Path,
) -> None:
    runner = make_runner(settings(tmp_path, "anthropic"))  # constructing never fails
    assert runner.name == "anthropic"
    with pytest.raises(ModelError) as info:
        await runner.run(agent_request(tmp_path))
    assert (info.value.retryable, info.value.kind) == (False, "auth")
    assert "ANTHROPIC_API_KEY" in str(info.value)
    # command stages do not need a model
    assert (await runner.run(command_request(tmp_path, "true"))).status == "passed"


async def test_auto_prefers_anthropic_when_a_key_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_on_path: Path
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    config = settings(tmp_path, "auto")
    assert resolve_runner_name(config) == "anthropic"
    runner = make_runner(config)
    assert runner.name == "anthropic"
    assert type(runner.agent_runner()).__name__ == "AnthropicRunner"


async def test_auto_uses_claude_code_when_claude_is_on_path(
    tmp_path: Path, claude_on_path: Path
) -> None:
    config = settings(tmp_path, "auto")
    assert resolve_runner_name(config) == "claude-code"
    runner = make_runner(config)
    assert runner.name == "claude-code"
    assert runner.agent_runner().name == "claude-code"


async def test_auto_without_any_model_never_falls_back_to_offline(
    tmp_path: Path, empty_path: Path
) -> None:
    config = settings(tmp_path, "auto")
    assert resolve_runner_name(config) is None
    runner = make_runner(config)
    assert runner.name == "auto"
    with pytest.raises(ModelError) as info:
        await runner.run(agent_request(tmp_path))
    assert info.value.retryable is False
    assert str(info.value) == (
        "no model runner available: set ANTHROPIC_API_KEY, install Claude Code "
        "(`claude` on PATH), or set STAGEFLOW_RUNNER=offline"
    )
    assert str(info.value) == NO_RUNNER_MESSAGE
    assert (await runner.run(command_request(tmp_path, "echo ok"))).status == "passed"


@pytest.mark.parametrize(
    ("name", "key", "claude", "label"),
    [
        ("offline", False, False, "offline (scripted, no model calls)"),
        ("anthropic", False, False, "anthropic"),
        ("claude-code", False, False, "claude-code"),
        ("auto", True, True, "auto -> anthropic"),
        ("auto", False, True, "auto -> claude-code"),
        ("auto", False, False, "auto (no runner available)"),
    ],
)
def test_describe_runner_labels(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    empty_path: Path,
    name: RunnerName,
    key: bool,
    claude: bool,
    label: str,
) -> None:
    if key:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    if claude:
        (empty_path / "claude").write_text("#!/bin/sh\n")
        (empty_path / "claude").chmod(0o755)
    assert describe_runner(settings(tmp_path, name)) == label
