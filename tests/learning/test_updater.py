"""The profile tables follow the logs: updated as attempts finish, caught up after a process
missed them (a crash, a decision made elsewhere), idempotent, and equal to a rebuild from
every run's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import ModelError
from stageflow.store.store import Store
from tests.engine.harness import FakeRunner, default_result
from tests.learning.harness import LearningEnv, agent_file, learning_env

pytestmark = pytest.mark.anyio

MIXED = """
name: mixed
stages:
  - id: design
    agent: planner
    approval: required
  - id: build
    agent: worker
    model: haiku
    depends_on: [design]
    on_failure: {retry: {max_attempts: 3, backoff: 0}}
  - id: check
    agent: worker
    depends_on: [build]
"""
AGENTS = {"planner": agent_file("planner", "opus", "Designs the change.")}


def flaky_runner() -> FakeRunner:
    """build: a provider failure, then a real failure, then success; everything else passes."""
    calls: dict[str, int] = {}

    async def build(req: AttemptRequest) -> AttemptResult:
        n = calls[req.run_id] = calls.get(req.run_id, 0) + 1
        if n == 1:
            raise ModelError("overloaded", retryable=True)  # says nothing about the model
        if n == 2:
            return default_result(req).model_copy(update={"status": "failed"})
        return default_result(req)

    return FakeRunner({"build": build})


async def tables(store: Store) -> tuple[list[object], list[object]]:
    return list(await store.profiles.samples()), list(await store.profiles.profiles())


async def one_run(env: LearningEnv, *, reject: bool, sync: bool = True) -> str:
    """A run whose design is rejected once (or not), then approved, to the end."""
    state = await env.service.start_run("mixed", "Add CSV export")
    await env.scheduler.drive(state.run_id, until="idle")
    if reject:
        await env.service.decide(state.run_id, stage=None, decision="reject", feedback="again")
        await env.scheduler.drive(state.run_id, until="idle")
    waiting = (await env.service.state(state.run_id)).stages["design"].attempt
    await env.service.decide(state.run_id, stage=None, decision="approve", attempt=waiting)
    await env.scheduler.drive(state.run_id, until="idle")
    if sync:
        await env.learning.updater.drain()
    return state.run_id


async def test_the_incremental_tables_equal_a_rebuild_from_the_logs(tmp_path: Path) -> None:
    async with learning_env(tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS) as env:
        for reject in (True, False, True):
            await one_run(env, reject=reject)
        samples, profiles = await tables(env.store)
        report = await env.learning.updater.rebuild()
        assert (report.runs, report.samples, report.skipped) == (3, len(samples), ())
        assert await tables(env.store) == (samples, profiles)
    by = {(p.agent, p.task_type, p.model): p for p in profiles}  # type: ignore[attr-defined]
    design = by[("planner", "design", "claude-opus-4-7")]
    # design: a rework in two runs, then an approval in each of the three
    assert (design.executions, design.successes, design.reworks, design.failures) == (5, 3, 2, 0)
    build = by[("worker", "feature", "claude-haiku-4-5")]
    # build: the provider failure is not counted; the real failure and the success are
    assert (build.executions, build.successes, build.failures) == (6, 3, 3)
    check = by[("worker", "feature", "claude-sonnet-4-6")]
    assert (check.executions, check.successes) == (3, 3)


async def test_a_process_that_missed_the_attempts_is_caught_up_from_the_log(
    tmp_path: Path,
) -> None:
    async with learning_env(
        tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS, with_learning=False
    ) as env:
        for reject in (False, True):
            # no sink, no drain: as if the process died after each run
            await one_run(env, reject=reject, sync=False)
        assert await env.store.profiles.samples() == []
        behind = await env.store.profiles.behind()
        assert len(behind) == 2 and all(read == 0 for _, _, read in behind)
        # run 1: design 1, build 2 (the provider failure is not counted), check 1; run 2: a
        # rework of the design besides
        assert await env.learning.updater.catch_up() == 4 + 5
        assert await env.store.profiles.behind() == []
        caught = await tables(env.store)
        await env.learning.updater.rebuild()
        assert await tables(env.store) == caught


async def test_a_decision_appended_by_another_process_is_read_like_any_entry(
    tmp_path: Path,
) -> None:
    async with learning_env(tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS) as env:
        state = await env.service.start_run("mixed", "Add CSV export")
        await env.scheduler.drive(state.run_id, until="idle")
        await env.learning.updater.drain()
        assert await env.store.profiles.samples() == []  # the design waits for its approval
        async with await Store.open(env.settings.db_path) as other:  # another process
            from stageflow.engine.service import Service

            await Service(env.settings, other).decide(
                state.run_id, stage="design", decision="approve", approver="someone"
            )
        assert await env.learning.updater.catch_up() == 1
        [design] = await env.store.profiles.samples()
        assert (design.stage, design.result) == ("design", "success")


async def test_syncing_twice_changes_nothing_and_the_position_never_goes_back(
    tmp_path: Path,
) -> None:
    async with learning_env(tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS) as env:
        run_id = await one_run(env, reject=False)
        before = await tables(env.store)
        generation = await env.store.profiles.generation()
        read = await env.store.profiles.progress(run_id)
        assert await env.learning.updater.sync_run(run_id) == []
        assert await tables(env.store) == before
        assert await env.store.profiles.generation() == generation  # nothing new to reload
        from stageflow.learning.stats import aggregate

        await env.store.profiles.record([], {run_id: 1}, aggregate)  # a slower process
        assert await env.store.profiles.progress(run_id) == read


async def test_the_offline_runner_and_command_stages_teach_nothing(tmp_path: Path) -> None:
    template = """
    name: plainrun
    stages:
      - {id: a, agent: worker}
      - {id: b, run: "true", depends_on: [a]}
    """

    async def offline(req: AttemptRequest) -> AttemptResult:
        return default_result(req).model_copy(update={"runner": "offline", "model": "offline"})

    async with learning_env(tmp_path, template, runner=FakeRunner({"a": offline})) as env:
        state = await env.run("plainrun")
        assert state.status == "completed"
        assert await env.store.profiles.samples() == []
        assert await env.store.profiles.behind() == []  # read, nothing to learn
