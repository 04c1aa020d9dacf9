"""Several connections and processes on one database file."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.store import Store
from tests.store.conftest import new_run, started

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import anyio

    from stageflow.events import AttemptStarted
    from stageflow.store import Store

    async def main(path: str, expect_seq: int) -> None:
        async with await Store.open(Path(path)) as store:
            event = AttemptStarted(stage="child", attempt=1)
            await store.append("r-1", [event], expect_seq=expect_seq, actor="child")

    anyio.run(main, sys.argv[1], int(sys.argv[2]))
    """
)


@pytest.mark.anyio
async def test_data_version_changes_for_other_connections_commits_only(db_path: Path) -> None:
    async with await Store.open(db_path) as mine, await Store.open(db_path) as other:
        await new_run(mine)
        start = await mine.data_version()
        await mine.append("r-1", [started("mine")], expect_seq=1, actor="mine")
        assert await mine.data_version() == start

        await other.append("r-1", [started("other")], expect_seq=2, actor="other")
        changed = await mine.data_version()
        assert changed != start
        assert await mine.data_version() == changed  # stable until the next foreign commit


@pytest.mark.anyio
@pytest.mark.slow
async def test_an_append_by_another_process_is_seen_by_this_one(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        await new_run(store)
        before = await store.data_version()

        with anyio.fail_after(60):
            done = await anyio.run_process(
                [sys.executable, "-c", CHILD, str(db_path), "1"], check=False
            )
        assert done.returncode == 0, done.stderr.decode()

        assert await store.data_version() != before
        log = await store.load_events("r-1")
        assert [(e.seq, e.actor) for e in log] == [(1, "tester"), (2, "child")]
        assert ev.verify_chain(log) == []
        assert (await store.get_run("r-1")).last_seq == 2
