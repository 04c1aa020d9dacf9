"""The ``stageflow://`` resources, read through ``mcp.Client`` in both protocol eras."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
import yaml
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import ReadResourceResult, TextResourceContents

from stageflow.config import Settings, load_settings
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.server.app import build_server
from stageflow.server.resources import register_resources
from stageflow.store.store import Store
from stageflow.subagents.offline.runner import OfflineRunner
from stageflow.tools.results import agent_uri, artifact_uri, run_uri, template_uri
from stageflow.workflows.catalog import load_catalog
from stageflow.workflows.loader import load_template_text

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


async def make_server(settings: Settings) -> MCPServer[Any]:
    """The real server over the project's SQLite file (runner: offline, see conftest)."""
    mcp = build_server(settings)
    if not await mcp.list_resource_templates():
        register_resources(mcp)  # until build_server registers them itself
    return mcp


@dataclass
class Project:
    settings: Settings
    run_id: str
    design: str  # content of architecture/design, the artifact waiting for approval


@pytest.fixture
async def project(tmp_path: Path) -> Project:
    """A project with one feature_development run stopped at its architecture approval."""
    settings = load_settings(tmp_path / "proj")
    async with await Store.open(settings.db_path) as store:
        service = Service(settings, store, runner_label="offline")
        state = await service.start_run("feature_development", "Add a --verbose flag")
        scheduler = Scheduler(store, OfflineRunner(), max_concurrent_agents=2, lease_seconds=15)
        with anyio.fail_after(20):
            await scheduler.drive(state.run_id, until="idle")
        design = (await store.get_artifact(state.run_id, "architecture", "design")).content
    return Project(settings, state.run_id, design)


def _text(result: ReadResourceResult) -> tuple[str, str | None]:
    assert len(result.contents) == 1
    item = result.contents[0]
    assert isinstance(item, TextResourceContents)
    return item.text, item.mime_type


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_five_resource_templates_are_listed_with_mime_types(
    project: Project, mode: Mode
) -> None:
    async with Client(await make_server(project.settings), mode=mode) as client:
        listed = await client.list_resource_templates()
    found = {t.uri_template: t.mime_type for t in listed.resource_templates}
    assert found == {
        "stageflow://runs/{run_id}": "application/json",
        "stageflow://runs/{run_id}/artifacts/{stage}/{name}": "text/markdown",
        "stageflow://templates/{name}": "application/yaml",
        "stageflow://agents/{name}": "text/markdown",
        "stageflow://knowledge/{doc_id}": "text/markdown",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_run_resource_is_the_run_view_as_json(project: Project, mode: Mode) -> None:
    async with Client(await make_server(project.settings), mode=mode) as client:
        text, mime = _text(await client.read_resource(run_uri(project.run_id)))
    view = json.loads(text)
    assert mime == "application/json"
    assert view["run_id"] == project.run_id
    assert view["template"] == "feature_development"
    assert view["status"] == "waiting"
    assert [w["stage"] for w in view["waiting"]] == ["architecture"]
    stages = {s["id"]: s for s in view["stages"]}
    assert stages["architecture"]["status"] == "awaiting_approval"
    assert [a["name"] for a in stages["architecture"]["artifacts"]] == ["design"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_artifact_resource_is_the_latest_artifact_text(project: Project, mode: Mode) -> None:
    uri = artifact_uri(project.run_id, "architecture", "design")
    async with Client(await make_server(project.settings), mode=mode) as client:
        text, mime = _text(await client.read_resource(uri))
    assert mime == "text/markdown"
    assert text == project.design
    assert text.strip()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_unknown_run_is_invalid_params_naming_the_known_runs(
    project: Project, mode: Mode
) -> None:
    async with Client(await make_server(project.settings), mode=mode) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(run_uri("r-nope"))
    assert info.value.error.code == INVALID_PARAMS
    assert "unknown run 'r-nope'" in info.value.error.message
    assert project.run_id in info.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_unknown_artifact_is_invalid_params_naming_the_run_artifacts(
    project: Project, mode: Mode
) -> None:
    uri = artifact_uri(project.run_id, "architecture", "nothing")
    async with Client(await make_server(project.settings), mode=mode) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(uri)
    assert info.value.error.code == INVALID_PARAMS
    assert "architecture/design" in info.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_template_resource_is_yaml_that_loads_back_to_the_same_spec(
    project: Project, mode: Mode
) -> None:
    async with Client(await make_server(project.settings), mode=mode) as client:
        text, mime = _text(await client.read_resource(template_uri("bugfix")))
    assert mime == "application/yaml"
    assert text.startswith("# template 'bugfix' from ")
    assert "(builtin layer)" in text.splitlines()[0]
    loaded = load_template_text(text, source="<resource>")
    original = load_catalog(project.settings.template_dirs()).get("bugfix")
    assert loaded.model_dump() == original.model_dump()  # line numbers differ, not content


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_project_template_overrides_the_builtin_one(project: Project, mode: Mode) -> None:
    folder = project.settings.state_dir / "workflows"
    folder.mkdir(parents=True)
    (folder / "bugfix.yaml").write_text(
        "name: bugfix\ndescription: Our own bug flow\nstages:\n"
        "  - id: fix\n    agent: developer\n    produces: [patch_summary]\n",
        encoding="utf-8",
    )
    async with Client(await make_server(project.settings), mode=mode) as client:
        text, _ = _text(await client.read_resource(template_uri("bugfix")))
    assert "(project layer)" in text.splitlines()[0]
    body = yaml.safe_load(text)
    assert body["description"] == "Our own bug flow"
    assert [s["id"] for s in body["stages"]] == ["fix"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_unknown_template_is_invalid_params_naming_the_known_templates(
    project: Project, mode: Mode
) -> None:
    async with Client(await make_server(project.settings), mode=mode) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(template_uri("nope"))
    assert info.value.error.code == INVALID_PARAMS
    assert "unknown template 'nope'" in info.value.error.message
    assert "feature_development" in info.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_broken_template_is_an_error_naming_its_file(project: Project, mode: Mode) -> None:
    folder = project.settings.state_dir / "workflows"
    folder.mkdir(parents=True)
    (folder / "broken.yaml").write_text("name: broken\nstages: []\n", encoding="utf-8")
    async with Client(await make_server(project.settings), mode=mode) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(template_uri("broken"))
    assert info.value.error.code == INTERNAL_ERROR
    assert "broken.yaml" in info.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_agent_resource_is_the_agent_file(project: Project, mode: Mode) -> None:
    builtin = Path(project.settings.agent_dirs()[0][1]) / "architect.md"
    async with Client(await make_server(project.settings), mode=mode) as client:
        text, mime = _text(await client.read_resource(agent_uri("architect")))
    assert mime == "text/markdown"
    assert text == builtin.read_text(encoding="utf-8")
    assert text.startswith("---\nname: architect\n")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_project_agent_overrides_the_builtin_one(project: Project, mode: Mode) -> None:
    folder = project.settings.state_dir / "agents"
    folder.mkdir(parents=True)
    mine = "---\nname: architect\ndescription: Ours.\nmodel: haiku\n---\nDesign small.\n"
    (folder / "architect.md").write_text(mine, encoding="utf-8")
    async with Client(await make_server(project.settings), mode=mode) as client:
        text, _ = _text(await client.read_resource(agent_uri("architect")))
    assert text == mine


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_unknown_agent_is_invalid_params_naming_the_known_agents(
    project: Project, mode: Mode
) -> None:
    async with Client(await make_server(project.settings), mode=mode) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(agent_uri("nobody"))
    assert info.value.error.code == INVALID_PARAMS
    assert "unknown agent 'nobody'" in info.value.error.message
    assert "architect" in info.value.error.message
