"""Per-attempt agent versions: each new attempt uses the agent's current definition, a running
attempt keeps the one it started with, and the log records what every attempt used."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.state import fold
from tests.engine.harness import FakeRunner, default_result, engine_env
from tests.engine.pure import Log

pytestmark = pytest.mark.anyio

TWO = """
name: two
stages:
  - {id: first, agent: worker}
  - {id: second, agent: worker, depends_on: [first]}
"""

RETRY = """
name: again
stages:
  - {id: flaky, agent: worker, on_failure: {retry: {max_attempts: 2, backoff: 0}}}
"""


def started(envs: list[ev.Envelope]) -> list[ev.AttemptStarted]:
    return [e.event for e in envs if isinstance(e.event, ev.AttemptStarted)]


async def test_an_attempt_keeps_its_definition_and_the_next_one_records_the_new(
    tmp_path: Path,
) -> None:
    release = anyio.Event()
    running = anyio.Event()

    async def hold(req: AttemptRequest) -> AttemptResult:
        running.set()
        with anyio.fail_after(5):
            await release.wait()
        return default_result(req)

    runner = FakeRunner({"first": hold})
    async with engine_env(tmp_path, TWO, runner=runner) as env:
        state = await env.service.start_run("two", "do it")
        old = state.agents["worker"]
        current = {"worker": old}
        new = old.model_copy(update={"description": "edited", "system_prompt": "Be brief."})
        scheduler = Scheduler(env.store, runner, poll_interval=0.05, agents=current.get)

        async def drive() -> None:
            await scheduler.drive(state.run_id, until="terminal")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drive)
                await running.wait()
                current["worker"] = new  # edited while the first stage runs
                release.set()
        scheduler.close()
        envs = await env.store.load_events(state.run_id)

    assert [c.agent for c in runner.calls] == [old, new]
    first, second = started(envs)
    assert (first.agent_hash, first.agent_def) == (old.content_hash, None)
    assert second.agent_hash == new.content_hash
    assert second.agent_def == new.model_dump(mode="json")
    final = fold(envs)
    assert final.status == "completed"
    assert final.agents["worker"].content_hash == new.content_hash  # replay reproduces it
    assert [a.agent_hash for st in final.stages.values() for a in st.attempts] == [
        old.content_hash,
        new.content_hash,
    ]
    assert ev.verify_chain(envs) == []


async def test_a_retry_uses_the_definition_current_when_it_starts(tmp_path: Path) -> None:
    current: dict[str, AgentDefinition] = {}

    async def fail_then_pass(req: AttemptRequest) -> AttemptResult:
        if req.attempt == 1:
            current["worker"] = req.agent.model_copy(update={"description": "fixed"})  # type: ignore[union-attr]
            return AttemptResult(status="failed", error="flaky", runner="fake")
        return default_result(req)

    runner = FakeRunner({"flaky": fail_then_pass})
    async with engine_env(tmp_path, RETRY, runner=runner) as env:
        state = await env.service.start_run("again", "do it")
        scheduler = Scheduler(env.store, runner, poll_interval=0.05, agents=current.get)
        with anyio.fail_after(10):
            final = await scheduler.drive(state.run_id, until="terminal")
        scheduler.close()
        envs = await env.store.load_events(state.run_id)

    assert final.status == "completed"
    assert [c.agent.description for c in runner.calls if c.agent] == ["A test agent.", "fixed"]
    assert [s.agent_def is not None for s in started(envs)] == [False, True]
    assert fold(envs).agents["worker"].description == "fixed"


async def test_without_a_provider_every_attempt_uses_the_run_snapshot(tmp_path: Path) -> None:
    async with engine_env(tmp_path, TWO) as env:
        state = await env.service.start_run("two", "do it")
        (env.settings.state_dir / "agents" / "worker.md").write_text(
            "---\nname: worker\ndescription: changed on disk\n---\nOther.\n", encoding="utf-8"
        )
        with anyio.fail_after(10):
            await env.scheduler.drive(state.run_id, until="terminal")
        envs = await env.store.load_events(state.run_id)
    assert {c.agent.description for c in env.runner.calls if c.agent} == {"A test agent."}
    assert all(s.agent_def is None for s in started(envs))


async def test_a_provider_without_the_agent_keeps_the_run_snapshot(tmp_path: Path) -> None:
    def nothing(name: str) -> AgentDefinition | None:
        return None

    async with engine_env(tmp_path, TWO) as env:
        state = await env.service.start_run("two", "do it")
        scheduler = Scheduler(env.store, env.runner, poll_interval=0.05, agents=nothing)
        with anyio.fail_after(10):
            await scheduler.drive(state.run_id, until="terminal")
        scheduler.close()
    assert [c.agent == state.agents["worker"] for c in env.runner.calls] == [True, True]


def test_folding_a_recorded_definition_updates_the_run_agents() -> None:
    log = Log({"name": "t", "stages": [{"id": "a", "agent": "worker"}]})
    newer = AgentDefinition(name="worker", description="newer", system_prompt="Hi.")
    state = log.add(
        ev.AttemptStarted(
            stage="a",
            attempt=1,
            agent="worker",
            agent_hash=newer.content_hash,
            agent_def=newer.model_dump(mode="json"),
        )
    )
    assert state.agents["worker"] == newer
    assert state.stages["a"].current is not None
    assert state.stages["a"].current.agent_hash == newer.content_hash


def test_an_absent_definition_is_absent_from_the_hashed_payload() -> None:
    # entries logged before the field existed must still verify
    plain = ev.event_payload(ev.AttemptStarted(stage="a", attempt=1, agent="worker"))
    assert "agent_def" not in plain
    with_def = ev.AttemptStarted(stage="a", attempt=1, agent="worker", agent_def={"name": "w"})
    payload = ev.event_payload(with_def)
    assert payload["agent_def"] == {"name": "w"}
    assert ev.EVENT_ADAPTER.validate_python(payload) == with_def
