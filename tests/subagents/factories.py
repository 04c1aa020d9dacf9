"""Builders for attempt requests and settings used across the subagent tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stageflow.agents.definition import AgentDefinition
from stageflow.config import RunnerName, Settings
from stageflow.engine.runner import AttemptRequest, InputArtifact
from stageflow.workflows.spec import StageSpec

TASK = "Add rate limiting to the login endpoint"


def agent_request(
    workdir: Path,
    *,
    agent: str = "architect",
    stage: str = "architecture",
    produces: list[str] | None = None,
    attempt: int = 1,
    task: str = TASK,
    **fields: Any,
) -> AttemptRequest:
    """An attempt of an agent stage."""
    return AttemptRequest(
        run_id="r-test-0001",
        stage=StageSpec(id=stage, agent=agent, produces=produces or ["design"]),
        attempt=attempt,
        task=task,
        agent=AgentDefinition(name=agent, system_prompt=f"You are the {agent}."),
        workdir=workdir,
        **fields,
    )


def command_request(
    workdir: Path,
    command: str,
    *,
    produces: list[str] | None = None,
    inputs: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> AttemptRequest:
    """An attempt of a ``run:`` stage."""
    return AttemptRequest(
        run_id="r-test-0002",
        stage=StageSpec(id="checks", run=command, produces=produces or []),
        attempt=1,
        task=TASK,
        inputs=inputs or {},
        workdir=workdir,
        timeout=timeout,
    )


def artifact(stage: str, name: str, version: int, content: str) -> InputArtifact:
    return InputArtifact(stage=stage, name=name, version=version, content=content)


def settings(tmp_path: Path, runner: RunnerName) -> Settings:
    return Settings(
        project=tmp_path,
        db_path=tmp_path / ".stageflow" / "state.db",
        home=tmp_path / "home",
        runner=runner,
        command_timeout=30.0,
    )


def process_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for some parent to reap it."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        state = text.rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
