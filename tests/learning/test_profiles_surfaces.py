"""Where the profiles are read: the ``stageflow://profiles`` resource (with and without its
filters) and ``stageflow profiles`` (table, ``--json``, ``--rebuild``), on a project whose
runs went through a model runner."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import TextResourceContents

from stageflow.cli.main import main
from stageflow.config import load_settings
from stageflow.server.app import build_server
from tests.learning.harness import learning_env
from tests.learning.test_updater import AGENTS, MIXED, flaky_runner, one_run


async def a_project_with_history(tmp_path: Path) -> Path:
    async with learning_env(tmp_path, MIXED, runner=flaky_runner(), agents=AGENTS) as env:
        await one_run(env, reject=True)
        await one_run(env, reject=False)
        return env.settings.project


def read(result: Any) -> dict[str, Any]:
    [item] = result.contents
    assert isinstance(item, TextResourceContents) and item.mime_type == "application/json"
    data: dict[str, Any] = json.loads(item.text)
    return data


@pytest.mark.anyio
async def test_the_resource_lists_the_profiles_and_filters_them(tmp_path: Path) -> None:
    project = await a_project_with_history(tmp_path)
    server = build_server(load_settings(project, runner="offline"), watch_files=False)
    async with Client(server) as client:
        every = read(await client.read_resource("stageflow://profiles"))
        keys = {(p["agent"], p["task_type"], p["model"]) for p in every["profiles"]}
        assert keys == {
            ("planner", "design", "claude-opus-4-7"),
            ("worker", "feature", "claude-haiku-4-5"),
            ("worker", "feature", "claude-sonnet-4-6"),
        }
        design = read(await client.read_resource("stageflow://profiles?agent=planner"))
        [row] = design["profiles"]
        assert (row["executions"], row["successes"], row["reworks"]) == (3, 2, 1)
        assert row["why"].startswith("claude-opus-4-7 for planner on design: 2 of 3 succeeded")
        both = read(
            await client.read_resource("stageflow://profiles?agent=worker&task_type=feature")
        )
        assert len(both["profiles"]) == 2
        none = read(await client.read_resource("stageflow://profiles?agent=nobody"))
        assert none["profiles"] == [] and none["samples"] == every["samples"]


def cli(project: Path, *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([*argv, "--project", str(project)], out=out)
    return code, out.getvalue() + err.getvalue()


def test_the_cli_shows_filters_and_rebuilds_the_profiles(tmp_path: Path) -> None:
    project = anyio.run(a_project_with_history, tmp_path)
    code, table = cli(project, "profiles")
    assert code == 0, table
    lines = table.splitlines()
    assert lines[0].split() == [
        "agent",
        "type",
        "model",
        "runs",
        "ok",
        "rework",
        "fail",
        "success",
        "conf",
        "cost",
    ]
    assert any(line.split()[:7] == ["worker", "feature", "claude-haiku-4-5", "4", "2", "0", "2"]
               for line in lines)  # fmt: skip
    assert any(line.startswith("auto: threshold 0.80 over haiku, sonnet, opus") for line in lines)
    assert "  claude-haiku-4-5 for worker on feature: 2 of 4 succeeded" in table  # the why lines
    code, text = cli(project, "profiles", "--task-type", "design", "--json")
    assert code == 0, text
    [row] = json.loads(text)["profiles"]
    assert row["agent"] == "planner"
    code, before = cli(project, "profiles", "--json")
    code, rebuilt = cli(project, "profiles", "--rebuild")
    assert code == 0 and rebuilt.startswith("rebuilt from 2 run(s): 9 attempt(s), 3 profile(s)")
    code, after = cli(project, "profiles", "--json")
    assert json.loads(after)["profiles"] == json.loads(before)["profiles"]
