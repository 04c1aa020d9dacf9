"""Hostile agent and template files in a served project: the server starts (in process and as
``stageflow serve`` over stdio), keeps serving through hot reloads of them, and
``workflow_templates`` lists each one as a problem with its file and line, at a small size."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types

from stageflow.config import Settings, load_settings
from stageflow.server.app import build_server
from tests.server.test_stdio import served
from tests.workflows.hostile import (
    billion_laughs_agent,
    billion_laughs_template,
    chained_template,
    deep_agent,
    deep_toml_template,
    huge_template,
)

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]
WAIT_S = 15.0
RESULT_BUDGET = 64 * 1024  # workflow_templates of the built-in catalog is about 17 KB

GOOD_AGENT = "---\nname: scribe\ndescription: Takes notes\nmodel: haiku\n---\nYou take notes.\n"


def make_project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    for rel, text in {"agents/scribe.md": GOOD_AGENT, **files}.items():
        path = root / ".stageflow" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / ".stageflow" / "workflows").mkdir(parents=True, exist_ok=True)
    return root


def settings_of(root: Path) -> Settings:
    return load_settings(root, runner="offline")


def catalog(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def problems_by_file(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every listed problem (template entries and the errors list) by the file it names."""
    out: dict[str, list[str]] = {}
    for line in data["errors"]:
        out.setdefault(line.split(":")[0], []).append(line)
    return out


HOSTILE_AT_START = {
    "agents/deep.md": deep_agent(),  # 100 KB of '[': RecursionError at start-up before
    "workflows/deep.toml": deep_toml_template(),  # 20 KB: RecursionError in tomllib before
}


@pytest.mark.parametrize("mode", MODES)
async def test_the_server_starts_with_deeply_nested_files_and_lists_each_once(
    tmp_path: Path, mode: Any
) -> None:
    root = make_project(tmp_path, HOSTILE_AT_START)

    with anyio.fail_after(60):
        async with Client(build_server(settings_of(root)), mode=mode) as client:
            brief = catalog(await client.call_tool("workflow_templates", {}))
            data = catalog(await client.call_tool("workflow_templates", {"detail": "full"}))
    assert len(brief["errors"]) == 2  # the compact result lists them too, cut to a preview
    data = data["full"]  # whole messages

    by_file = problems_by_file(data)
    agent, toml = (str(root / ".stageflow" / rel) for rel in HOSTILE_AT_START)
    assert [p.split(": ", 2)[2] for p in by_file[agent]] == [
        "front matter: nested too deeply at column 67: more than 64 levels of lists and mappings"
    ]
    assert by_file[toml] == [
        f"{toml}:5: nested too deeply at column 75: more than 64 levels of arrays and tables"
    ]
    assert "scribe" in {a["name"] for a in data["agents"]}  # the good file next to them
    assert {t["name"] for t in data["templates"]} >= {"feature_development", "deep"}


@pytest.mark.parametrize("mode", MODES)
async def test_workflow_templates_stays_small_with_alias_bombs_and_oversized_templates(
    tmp_path: Path, mode: Any
) -> None:
    files = {
        # five levels (59,049 strings): enough to pass the bound, small enough that the
        # unbounded code this replaces answered (with megabytes) instead of dying
        "workflows/laughs.yaml": billion_laughs_template(levels=5),
        "agents/laughs.md": billion_laughs_agent(levels=5),
        "workflows/huge.yaml": huge_template(2 * 1024 * 1024),
        "workflows/chain.yaml": chained_template(1200),
    }
    root = make_project(tmp_path, files)

    with anyio.fail_after(60):
        async with Client(build_server(settings_of(root)), mode=mode) as client:
            result = await client.call_tool("workflow_templates", {})
    data = catalog(result)

    assert len(json.dumps(data)) < RESULT_BUDGET
    by_file = problems_by_file(data)
    path = {rel: str(root / ".stageflow" / rel) for rel in files}
    assert len(by_file[path["workflows/laughs.yaml"]]) == 1
    assert "YAML aliases expand too far" in by_file[path["workflows/laughs.yaml"]][0]
    assert "front matter: YAML aliases expand too far" in by_file[path["agents/laughs.md"]][0]
    assert "the file is too large: 2.0 MiB" in by_file[path["workflows/huge.yaml"]][0]
    assert "too many stages: 1200" in by_file[path["workflows/chain.yaml"]][0]
    laughs = next(t for t in data["templates"] if t["name"] == "laughs")
    assert laughs["inputs"] == {} and laughs["stages"] == []


async def wait_for(client: Client, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """``workflow_templates`` until ``done`` holds (the watcher's reload arrived), bounded."""
    with anyio.fail_after(WAIT_S):
        while True:
            data = catalog(await client.call_tool("workflow_templates", {}))
            if done(data):
                return data
            await anyio.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
async def test_hot_reload_of_hostile_files_keeps_the_last_good_version_and_serves_on(
    tmp_path: Path, mode: Any
) -> None:
    root = make_project(tmp_path, {})
    agent = root / ".stageflow" / "agents" / "scribe.md"
    toml = root / ".stageflow" / "workflows" / "deep.toml"
    laughs = root / ".stageflow" / "workflows" / "laughs.yaml"

    async with Client(build_server(settings_of(root)), mode=mode) as client:
        await wait_for(client, lambda d: "scribe" in {a["name"] for a in d["agents"]})
        agent.write_text(deep_agent().replace("name: deep", "name: scribe"), encoding="utf-8")
        toml.write_text(deep_toml_template(), encoding="utf-8")
        laughs.write_text(billion_laughs_template(levels=5), encoding="utf-8")  # see above

        data = await wait_for(client, lambda d: len(problems_by_file(d)) == 3)

        assert {a["name"]: a["description"] for a in data["agents"]}["scribe"] == "Takes notes"
        by_file = problems_by_file(data)
        assert "front matter: nested too deeply" in by_file[str(agent)][0]
        assert "nested too deeply" in by_file[str(toml)][0]
        assert "YAML aliases expand too far" in by_file[str(laughs)][0]
        assert len(json.dumps(data)) < RESULT_BUDGET
        agent.write_text(GOOD_AGENT.replace("Takes notes", "Takes better notes"), "utf-8")
        await wait_for(
            client,
            lambda d: (
                {a["name"]: a["description"] for a in d["agents"]}.get("scribe")
                == "Takes better notes"
            ),
        )


@pytest.mark.slow
async def test_stdio_serve_starts_with_deeply_nested_files(tmp_path: Path) -> None:
    root = make_project(tmp_path, HOSTILE_AT_START)
    errlog_path = tmp_path / "serve.stderr"
    with errlog_path.open("w", encoding="utf-8") as errlog:
        try:
            with anyio.fail_after(120):
                async with served(root, errlog) as client:
                    data = catalog(await client.call_tool("workflow_templates", {}))
        except BaseException:
            errlog.flush()
            sys.stderr.write(errlog_path.read_text(encoding="utf-8", errors="replace"))
            raise
    by_file = problems_by_file(data)
    for rel in HOSTILE_AT_START:
        [problem] = by_file[str(root / ".stageflow" / rel)]
        assert "nested too deeply" in problem
    assert "RecursionError" not in errlog_path.read_text(encoding="utf-8", errors="replace")
