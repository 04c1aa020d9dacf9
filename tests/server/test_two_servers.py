"""Two ``stageflow serve`` processes on one project database, as two Claude Code sessions would
start them: server A starts a run and so executes it; server B approves its gate and A wakes
up and continues; A is SIGKILLed in the middle of a slow stage and B takes the run over,
records the killed attempt as interrupted, re-runs it once and completes the run. No stage
runs twice at the same time and every stage passes exactly once.

The slow stage is slow only for A: each server reads its own offline script at start-up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from stageflow import events as ev
from stageflow.store.store import RunRow, Store

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux", reason="SIGKILL, and /proc to tell the servers apart"
    ),
]

T = TypeVar("T")

TEMPLATE = """\
name: relay
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: required
  - {id: build, agent: developer, depends_on: [design], needs: [design.design],
     produces: [patch_summary]}
  - {id: testing, agent: tester, depends_on: [build], needs: [build.patch_summary],
     produces: [test_report]}
  - {id: docs, agent: documenter, depends_on: [testing], needs: [build.patch_summary],
     produces: [docs_update]}
"""
STAGES = ("design", "build", "testing", "docs")

# A short lease: B takes over at once because A's pid is gone, and after 2 s even if it were
# not; A's heartbeat (every lease/3) must keep its lease alive through the slow stage.
CONFIG = """\
[engine]
lease_seconds = 2
"""


def _params(project: Path, script: Path) -> StdioServerParameters:
    env = {
        "STAGEFLOW_RUNNER": "offline",
        "STAGEFLOW_HOME": os.environ["STAGEFLOW_HOME"],  # shared by both servers
        "STAGEFLOW_OFFLINE_SCRIPT": str(script),
        "PYTHONUNBUFFERED": "1",
    }
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "stageflow", "serve", "--project", str(project)],
        env=env,
        cwd=str(project),
    )


@asynccontextmanager
async def _served(project: Path, script: Path, errlog: TextIO) -> AsyncIterator[Client]:
    async with Client(stdio_client(_params(project, script), errlog=errlog)) as client:
        yield client


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"{tool} failed: {text}"
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


async def _status_until(
    client: Client, run_id: str, done: Callable[[dict[str, Any]], bool], *, limit: float = 60
) -> dict[str, Any]:
    """Poll ``workflow_status`` (which waits for a change) until ``done(run)``; bounded."""
    with anyio.fail_after(limit):
        while True:
            status = await _call(client, "workflow_status", run_id=run_id, wait_seconds=5)
            run: dict[str, Any] = status["run"]
            if done(run):
                return run
            assert run["status"] not in ("failed", "cancelled"), run


async def _store_until(store: Store, what: Callable[[], Any], *, limit: float = 30) -> None:
    """Poll the database (read as a third process would) until ``what()`` is truthy."""
    with anyio.fail_after(limit):
        while True:
            if await what():
                return
            await anyio.sleep(0.05)  # a poll interval, not a wait for an outcome


def _stage(run: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in run["stages"] if s["id"] == stage)


def _pid(owner: str | None) -> int:
    """The pid part of a ``host:pid:nonce`` owner id."""
    assert owner is not None
    return int(owner.split(":")[1])


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw if item)
    return {k: v for k, _, v in pairs}


def _of_type(envs: list[ev.Envelope], kind: type[T]) -> list[tuple[ev.Envelope, T]]:
    return [(e, e.event) for e in envs if isinstance(e.event, kind)]


async def test_survivor_completes_the_run_after_its_owner_is_sigkilled_and_no_stage_runs_twice(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    workflows = project / ".stageflow" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "relay.yaml").write_text(TEMPLATE, encoding="utf-8")
    (project / ".stageflow" / "config.toml").write_text(CONFIG, encoding="utf-8")
    script_a, script_b = tmp_path / "script-a.json", tmp_path / "script-b.json"
    script_a.write_text(json.dumps({"build": {"delay": 120}}), encoding="utf-8")
    script_b.write_text(json.dumps({"build": {"delay": 0.3}}), encoding="utf-8")
    db = project / ".stageflow" / "state.db"

    errlog_path = tmp_path / "serve.stderr"
    with errlog_path.open("w", encoding="utf-8") as errlog:
        try:
            with anyio.fail_after(150):
                run_id, owner_a, owner_b = await _two_servers(
                    project, db, script_a, script_b, errlog
                )
        except BaseException:
            errlog.flush()
            sys.stderr.write(errlog_path.read_text(encoding="utf-8", errors="replace"))
            raise

    with anyio.fail_after(10):
        async with await Store.open(db) as store:
            envs = await store.load_events(run_id)
    _assert_log(envs, owner_a, owner_b)


async def _two_servers(
    project: Path, db: Path, script_a: Path, script_b: Path, errlog: TextIO
) -> tuple[str, str, str]:
    """Drive the scenario; returns the run id and the owner ids of A and B."""
    async with _served(project, script_a, errlog) as server_a:
        started = await _call(server_a, "workflow_start", template="relay", task="add a cache")
        run_id = started["run_id"]
        run = await _status_until(server_a, run_id, lambda r: bool(r["waiting"]))
        assert [w["stage"] for w in run["waiting"]] == ["design"]
        owner_a = run["owner"]
        pid_a = _pid(owner_a)
        # A is the only server so far: the run's owner is A's serve process.
        assert pid_a != os.getpid()
        assert _environ(pid_a)["STAGEFLOW_OFFLINE_SCRIPT"] == str(script_a)

        async with await Store.open(db) as store:

            async def row() -> RunRow:
                return await store.get_run(run_id)

            assert (await row()).owner == owner_a
            async with _served(project, script_b, errlog) as server_b:
                # B sees the waiting gate and approves it; A keeps the run.
                seen = await _status_until(server_b, run_id, lambda r: bool(r["waiting"]))
                assert seen["owner"] == owner_a
                await _call(
                    server_b,
                    "workflow_approve",
                    run_id=run_id,
                    stage="design",
                    decision="approve",
                    approver="bob",
                )

                # A notices B's approval and starts the slow stage itself.
                run = await _status_until(
                    server_b, run_id, lambda r: _stage(r, "build")["status"] == "running"
                )
                assert (await row()).owner == owner_a
                build_starts = [
                    e
                    for _, e in _of_type(await store.load_events(run_id), ev.AttemptStarted)
                    if e.stage == "build"
                ]
                assert [(s.attempt, s.owner) for s in build_starts] == [(1, owner_a)]

                # Kill the owner mid-stage; nobody records the end of its attempt.
                os.kill(pid_a, signal.SIGKILL)

                # The survivor adopts the run, re-runs the stage and completes the run.
                await _store_until(store, lambda: _not_owned_by(row, owner_a), limit=30)
                done = await _status_until(server_b, run_id, lambda r: r["status"] == "completed")
                assert {s["id"]: s["status"] for s in done["stages"]} == dict.fromkeys(
                    STAGES, "succeeded"
                )
                owner_b = done["owner"]
                assert owner_b is not None and owner_b != owner_a
                pid_b = _pid(owner_b)
                assert _environ(pid_b)["STAGEFLOW_OFFLINE_SCRIPT"] == str(script_b)
    return run_id, owner_a, owner_b


async def _not_owned_by(row: Callable[[], Any], owner: str) -> bool:
    current: RunRow = await row()
    return current.owner is not None and current.owner != owner


def _assert_log(envs: list[ev.Envelope], owner_a: str, owner_b: str) -> None:
    assert ev.verify_chain(envs) == []
    assert isinstance(envs[-1].event, ev.RunCompleted)

    # Never two open attempts of one stage, and every attempt that started has ended.
    open_: dict[str, int] = {}
    for env in envs:
        e = env.event
        if isinstance(e, ev.AttemptStarted):
            assert e.stage not in open_, f"seq {env.seq}: {e.stage} started twice at once"
            open_[e.stage] = e.attempt
        elif isinstance(e, ev.AttemptFinished):
            assert open_.pop(e.stage) == e.attempt, f"seq {env.seq}: finished a closed attempt"
    assert open_ == {}

    finished = _of_type(envs, ev.AttemptFinished)
    outcomes = {s: [f.outcome for _, f in finished if f.stage == s] for s in STAGES}
    assert outcomes == {
        "design": ["passed"],
        "build": ["interrupted", "passed"],
        "testing": ["passed"],
        "docs": ["passed"],
    }
    starts = {
        s: [(a.attempt, a.kind) for _, a in _of_type(envs, ev.AttemptStarted) if a.stage == s]
        for s in STAGES
    }
    assert starts["build"] == [(1, "initial"), (2, "resume")]

    # B recorded A's attempt as interrupted and ran everything after it.
    ((interrupted_env, _),) = [(env, f) for env, f in finished if f.outcome == "interrupted"]
    assert interrupted_env.actor == owner_b
    by_a = [
        (a.stage, a.attempt) for _, a in _of_type(envs, ev.AttemptStarted) if a.owner == owner_a
    ]
    assert by_a == [("design", 1), ("build", 1)]

    # The approval came through B's client; the takeover names A as the previous owner.
    ((_, approval),) = _of_type(envs, ev.ApprovalDecided)
    assert (approval.stage, approval.decision, approval.approver) == ("design", "approve", "bob")
    takeovers = [t for _, t in _of_type(envs, ev.LeaseTaken) if t.owner == owner_b]
    assert [t.previous_owner for t in takeovers] == [owner_a]
    assert interrupted_env.seq > next(
        env.seq for env, t in _of_type(envs, ev.LeaseTaken) if t.owner == owner_b
    )
