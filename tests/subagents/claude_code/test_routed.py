"""The Claude Code runner gets the same model routing and config as the API runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.config import load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.subagents.claude_code.routed import RoutedRunner
from tests.subagents.factories import agent_request

pytestmark = pytest.mark.anyio


class Recorder:
    name = "claude-code"

    def __init__(self, fallback: str | None, max_turns: int, seen: list[object]) -> None:
        self.fallback, self.max_turns, self.seen = fallback, max_turns, seen

    async def run(self, request: AttemptRequest) -> AttemptResult:
        self.seen.append((request.model, request.bash_allow, self.fallback, self.max_turns))
        return AttemptResult(status="passed", artifacts={"design": "d"}, model="claude-x")


async def test_model_fallback_turns_and_bash_patterns_reach_the_runner(tmp_path: Path) -> None:
    (tmp_path / ".stageflow").mkdir()
    (tmp_path / ".stageflow" / "config.toml").write_text(
        '[models]\nfallback = "haiku"\n[subagents]\nmax_turns = 7\n'
        '[workspace]\nbash = ["make test"]\n',
        encoding="utf-8",
    )
    seen: list[object] = []
    runner = RoutedRunner(
        load_settings(tmp_path), lambda fb, turns: Recorder(fb, turns, seen), name="claude-code"
    )
    request = agent_request(tmp_path, bash_allow=["pytest*"]).model_copy(
        update={"agent": AgentDefinition(name="architect", model="opus")}
    )
    result = await runner.run(request)
    assert seen == [("claude-opus-4-7", ["pytest*", "make test"], "claude-haiku-4-5", 7)]
    assert (result.model_requested, result.model) == ("claude-opus-4-7", "claude-x")
    assert runner.name == "claude-code"
