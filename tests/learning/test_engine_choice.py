"""Choices made at attempt start, through the real scheduler and store: recorded on
``attempt_started`` with the scores behind them, carried by the runner's request, reproduced by
replaying the log (never recomputed), shown in status, and safe when the chooser is missing or
broken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stageflow import events as ev
from stageflow.engine.choice import AttemptChoice, ChoiceContext
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.state import fold
from stageflow.engine.views import build_view
from tests.engine.harness import FakeRunner, default_result
from tests.learning.harness import agent_file, learning_env

pytestmark = pytest.mark.anyio

PICK = """
name: pick
stages:
  - id: build
    agent: [worker, helper]
    model: auto
"""
AGENTS = {"helper": agent_file("helper", "haiku")}


def started(envs: list[ev.Envelope]) -> list[ev.AttemptStarted]:
    return [e.event for e in envs if isinstance(e.event, ev.AttemptStarted)]


async def test_the_choice_and_its_scores_go_on_attempt_started_and_into_the_request(
    tmp_path: Path,
) -> None:
    async with learning_env(tmp_path, PICK, agents=AGENTS) as env:
        state = await env.run("pick")
        envs = await env.store.load_events(state.run_id)
    [first] = started(envs)
    assert (first.agent, first.model) == ("worker", "sonnet")  # no history: first, default
    choice = first.choice
    assert choice is not None
    assert choice["task_type"] == "feature"
    agent = choice["agent"]
    assert agent["chosen"] == "worker" and agent["rule"].startswith("no history")
    assert [c["agent"] for c in agent["candidates"]] == ["worker", "helper"]
    assert set(agent["candidates"][0]) == {
        "agent",
        "score",
        "base",
        "expertise",
        "confidence",
        "executions",
    }
    model = choice["model"]
    assert model["chosen"] == "sonnet" and model["rule"].startswith("no history")
    assert [o["model"] for o in model["options"]] == ["haiku", "sonnet", "opus"]
    assert model["threshold"] == 0.8 and model["explore_share"] == 0.1
    assert choice["why"].startswith("worker (first of 2: no history) on sonnet")
    [request] = env.runner.calls
    assert request.agent is not None and request.agent.name == "worker"
    assert (request.stage.model, request.model) == ("sonnet", "sonnet")  # never "auto"
    # the snapshot holds every candidate, so any of them can run later
    assert set(fold(envs).agents) == {"worker", "helper"}


async def test_a_replay_reads_the_recorded_choice_and_status_says_why(tmp_path: Path) -> None:
    async with learning_env(tmp_path, PICK, agents=AGENTS) as env:
        for _ in range(3):
            state = await env.run("pick")
        envs = await env.store.load_events(state.run_id)
    # the replay is a pure fold: it holds what was recorded, whatever the profiles say now
    final = fold(envs)
    info = final.stages["build"].attempts[-1]
    assert info.choice == started(envs)[-1].choice
    view = build_view(final)
    [stage] = view.stages
    assert stage.why == info.choice["why"] if info.choice else False
    assert stage.candidates == ["worker", "helper"]
    assert stage.agent == info.agent
    assert view.stages[0].history[-1].choice == info.choice


async def test_the_agent_with_the_better_record_is_chosen_once_there_is_history(
    tmp_path: Path,
) -> None:
    async def worker_fails(req: AttemptRequest) -> AttemptResult:
        if req.agent is not None and req.agent.name == "worker":
            return default_result(req).model_copy(update={"status": "failed", "artifacts": {}})
        return default_result(req)

    template = """
    name: pick2
    stages:
      - id: build
        agent: [worker, helper]
        on_failure: {retry: {max_attempts: 3, backoff: 0}}
    """
    runner = FakeRunner({"build": worker_fails})
    async with learning_env(tmp_path, template, runner=runner, agents=AGENTS) as env:
        first = await env.run("pick2")
        second = await env.run("pick2")
        runs = [await env.store.load_events(r.run_id) for r in (first, second)]
    one, two = ([s.agent for s in started(r)] for r in runs)
    # no history: the first candidate; it fails, so its retry goes to the other one
    assert one == ["worker", "helper"]
    first_retry = started(runs[0])[1].choice
    assert first_retry is not None
    assert first_retry["agent"]["rule"] == "the first candidate that has not failed here"
    assert two == ["helper"]  # worker failed, helper delivered: helper ranks first now
    [choice] = [s.choice for s in started(runs[1])]
    assert choice is not None and choice["agent"]["rule"] == "the highest score"
    scores = {c["agent"]: c for c in choice["agent"]["candidates"]}
    assert scores["helper"]["score"] > scores["worker"]["score"]


async def test_without_learning_the_defaults_run_and_say_so(tmp_path: Path) -> None:
    async with learning_env(tmp_path, PICK, agents=AGENTS, with_learning=False) as env:
        state = await env.run("pick")
        envs = await env.store.load_events(state.run_id)
    [first] = started(envs)
    assert (first.agent, first.model) == ("worker", "sonnet")
    assert first.choice is not None and "no learning" in first.choice["why"]
    assert env.runner.calls[0].stage.model == "sonnet"


async def test_a_broken_chooser_falls_back_to_the_defaults_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    class Broken:
        async def prepare(self) -> None:
            raise RuntimeError("the profiles are gone")

        def choose(self, ctx: ChoiceContext) -> AttemptChoice:
            raise RuntimeError("bug")

    class Stranger:
        async def prepare(self) -> None:
            return None

        def choose(self, ctx: ChoiceContext) -> AttemptChoice:
            return AttemptChoice(agent="not-a-candidate", model="opus")

    for chooser in (Broken(), Stranger()):
        async with learning_env(tmp_path / type(chooser).__name__, PICK, agents=AGENTS) as env:
            env.scheduler.chooser = chooser
            state = await env.run("pick")
            envs = await env.store.load_events(state.run_id)
        assert state.status == "completed"
        [first] = started(envs)
        assert (first.agent, first.model) == ("worker", "sonnet")


async def test_a_stage_without_a_choice_records_none(tmp_path: Path) -> None:
    plain = "name: plain\nstages:\n  - {id: a, agent: worker}\n"
    async with learning_env(tmp_path, plain) as env:
        state = await env.run("plain")
        envs = await env.store.load_events(state.run_id)
    [first] = started(envs)
    payload: dict[str, Any] = ev.event_payload(first)
    assert "choice" not in payload  # absent stays absent: the entry hashes as before
    assert first.model == "sonnet"
