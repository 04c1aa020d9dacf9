"""The updater under attack: a process dying in the middle of an update, and several
processes updating the same tables at once. Either way the tables end equal to a rebuild
from the logs, and no sample is lost or counted twice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from stageflow.learning.stats import aggregate
from stageflow.learning.updater import ProfileUpdater, _replay
from stageflow.models.routing import load_routes
from stageflow.store.profiles import ProfileRow, SampleRow
from stageflow.store.store import Store
from tests.learning.harness import learning_env
from tests.learning.test_updater import AGENTS, MIXED, flaky_runner, one_run, tables

pytestmark = pytest.mark.anyio


class Crash(Exception):
    pass


async def test_a_crash_in_the_middle_of_an_update_leaves_nothing_half_written(
    tmp_path: Path,
) -> None:
    async with learning_env(
        tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS, with_learning=False
    ) as env:
        run_id = await one_run(env, reject=True, sync=False)
        keys: list[tuple[str, str, str]] = []

        def dies_on_the_second_key(samples: Sequence[SampleRow]) -> ProfileRow | None:
            keys.append(samples[0].key)
            if len(keys) == 2:  # the first key's row is already written in the transaction
                raise Crash("killed")
            return aggregate(samples)

        updater = env.learning.updater
        envs = await env.store.load_events(run_id)
        samples = _replay(run_id, envs, updater._resolve)
        assert len({s.key for s in samples}) >= 2
        with pytest.raises(Crash):
            await env.store.profiles.record(samples, {run_id: envs[-1].seq}, dies_on_the_second_key)
        # rolled back whole: no sample, no row, and the log still counts as unread
        assert await tables(env.store) == ([], [])
        assert await env.store.profiles.progress(run_id) == 0
        assert await env.store.profiles.generation() == 0
        # the next process catches up and gets what a rebuild gets
        assert await updater.catch_up() == len(samples)
        caught = await tables(env.store)
        await updater.rebuild()
        assert await tables(env.store) == caught


async def test_processes_updating_at_once_end_equal_to_a_rebuild(tmp_path: Path) -> None:
    async with learning_env(
        tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS, with_learning=False
    ) as env:
        for reject in (True, False, True, False):
            await one_run(env, reject=reject, sync=False)
        routes = load_routes(env.settings)
        others = [await Store.open(env.settings.db_path) for _ in range(3)]
        try:
            updaters = [ProfileUpdater(s, routes) for s in [env.store, *others]]
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for u in updaters:  # four processes catching up the same four runs
                        tg.start_soon(u.catch_up)
                        tg.start_soon(u.drain)
        finally:
            for s in others:
                await s.close()
        assert await env.store.profiles.behind() == []
        together = await tables(env.store)
        assert len(together[0]) == len({(s.run_id, s.stage, s.attempt) for s in together[0]})
        await env.learning.updater.rebuild()
        assert await tables(env.store) == together
