"""Stage timeouts and ``cancel`` take effect while a tool call blocks in a thread (issue 11,
point 4), through the real engine (store, scheduler, driver) on a real SQLite file.

Before: a Write to a FIFO blocked its worker thread for good; the stage timeout never fired and
``cancel`` marked the run cancelled while the stage stayed ``running``. Two layers now: the
file tools abandon their thread on cancel (and a thread not yet at its write never writes),
and the driver records the attempt even when a runner itself cannot be interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.engine import runner_call
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import ToolError
from stageflow.workspace.root import Workspace
from stageflow.workspace.tools import call_workspace_tool
from tests.engine.harness import Env, FakeRunner, default_result, engine_env, wait_until

pytestmark = pytest.mark.anyio

TIMED = """
name: timed
stages:
  - {id: a, agent: worker, timeout: 1s}
"""
UNTIMED = """
name: untimed
stages:
  - {id: a, agent: worker}
"""


class Hang:
    """A blocking point the test releases at the end (a hung network file system, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def wait(self) -> None:
        self.entered.set()
        self.release.wait(60)


@pytest.fixture
def hang() -> Iterator[Hang]:
    point = Hang()
    try:
        yield point
    finally:
        point.release.set()


def blocking_write(hang: Hang, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Workspace.write`` hangs before it writes, then goes on as usual."""
    original = Workspace._writable_path

    def stuck(self: Workspace, path: str) -> Path:
        hang.wait()
        return original(self, path)

    monkeypatch.setattr(Workspace, "_writable_path", stuck)


def writer(root: Path) -> Any:
    """A runner that makes one Write tool call in ``root``, then passes."""

    async def attempt(request: AttemptRequest) -> AttemptResult:
        ws = Workspace(root)
        await call_workspace_tool(ws, "Write", {"file_path": "late.txt", "content": "late"})
        return default_result(request)

    return attempt


async def stage_a(env: Env, run_id: str) -> str:
    return (await env.service.state(run_id)).stages["a"].status


async def test_a_stage_timeout_fires_while_a_write_blocks_in_its_thread(
    tmp_path: Path, hang: Hang, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocking_write(hang, monkeypatch)
    root = tmp_path / "work"
    root.mkdir()
    async with engine_env(tmp_path, TIMED, runner=FakeRunner({"a": writer(root)})) as env:
        run = (await env.service.start_run("timed", "x")).run_id
        started = time.monotonic()
        with anyio.fail_after(15):
            state = await env.scheduler.drive(run, until="terminal")
        assert time.monotonic() - started < 8.0
        assert state.stages["a"].status == "failed" and state.status == "failed"
        [attempt] = state.stages["a"].attempts
        assert attempt.outcome == "timed_out"
        hang.release.set()
        await anyio.sleep(0.3)
    assert not (root / "late.txt").exists(), "the abandoned thread wrote after the timeout"


async def test_cancel_takes_effect_while_a_write_blocks_in_its_thread(
    tmp_path: Path, hang: Hang, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocking_write(hang, monkeypatch)
    root = tmp_path / "work"
    root.mkdir()
    async with engine_env(tmp_path, UNTIMED, runner=FakeRunner({"a": writer(root)})) as env:
        run = (await env.service.start_run("untimed", "x")).run_id
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(run, until="terminal"))
                await anyio.to_thread.run_sync(hang.entered.wait, 10)
                await env.service.control(run, "cancel", reason="stop it")

                async def cancelled() -> bool:
                    return await stage_a(env, run) == "cancelled"

                await wait_until(cancelled, limit=5)
        state = await env.service.state(run)
        assert state.status == "cancelled"
        hang.release.set()
        await anyio.sleep(0.3)
    assert not (root / "late.txt").exists()


async def test_a_runner_stuck_in_a_thread_it_cannot_leave_still_times_out(
    tmp_path: Path, hang: Hang, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the driver's own guard: this runner ignores cancellation entirely while it waits
    monkeypatch.setattr(runner_call, "CANCEL_GRACE", 0.5)

    async def stuck(request: AttemptRequest) -> AttemptResult:
        await anyio.to_thread.run_sync(hang.wait)  # not abandon_on_cancel
        return default_result(request)

    async with engine_env(tmp_path, TIMED, runner=FakeRunner({"a": stuck})) as env:
        run = (await env.service.start_run("timed", "x")).run_id
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(run, until="terminal"))

                async def recorded() -> bool:
                    return await stage_a(env, run) == "failed"

                await wait_until(recorded, limit=6)  # 1 s timeout + 0.5 s grace
                state = await env.service.state(run)
                assert state.stages["a"].attempts[-1].outcome == "timed_out"
                assert hang.release.is_set() is False  # recorded while still stuck
                hang.release.set()  # the late result is dropped; drive ends


async def test_a_runner_stuck_in_a_thread_is_still_cancelled(
    tmp_path: Path, hang: Hang, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_call, "CANCEL_GRACE", 0.5)

    async def stuck(request: AttemptRequest) -> AttemptResult:
        await anyio.to_thread.run_sync(hang.wait)
        return default_result(request)

    async with engine_env(tmp_path, UNTIMED, runner=FakeRunner({"a": stuck})) as env:
        run = (await env.service.start_run("untimed", "x")).run_id
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: env.scheduler.drive(run, until="terminal"))
                await anyio.to_thread.run_sync(hang.entered.wait, 10)
                await env.service.control(run, "cancel")

                async def cancelled() -> bool:
                    return await stage_a(env, run) == "cancelled"

                await wait_until(cancelled, limit=5)
                hang.release.set()
        assert (await env.service.state(run)).status == "cancelled"


async def test_a_write_that_was_cancelled_before_writing_writes_nothing(
    tmp_path: Path, hang: Hang, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocking_write(hang, monkeypatch)
    ws = Workspace(tmp_path)
    with anyio.move_on_after(0.3):
        await call_workspace_tool(ws, "Write", {"file_path": "late.txt", "content": "x"})
    hang.release.set()
    await anyio.sleep(0.3)  # the abandoned thread runs on, finds the flag set, writes nothing
    assert not (tmp_path / "late.txt").exists()
    with pytest.raises(ToolError, match="cancelled before it wrote"):
        flag = threading.Event()
        flag.set()
        ws.write("late.txt", "x", cancelled=flag)
