"""Template prompts: listed and rendered in both protocol eras, kept in step with the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client, types
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.subscriptions import PromptsListChanged
from mcp.types import TextContent

from stageflow.config import Settings, load_settings
from stageflow.prompts.templates import notify_prompts_changed, register_prompts, sync_prompts
from stageflow.server.app import build_server
from stageflow.workflows.catalog import load_catalog

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]
BUILTIN = {
    "bugfix",
    "documentation_update",
    "feature_development",
    "feature_parallel",
    "plan_execute_audit",
    "security_audit",
}
EXTRA = """\
name: {name}
description: {description}
stages:
  - id: only
    agent: developer
    produces: [patch_summary]
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "proj")


def _write(settings: Settings, name: str, description: str) -> Path:
    folder = settings.state_dir / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(EXTRA.format(name=name, description=description), encoding="utf-8")
    return path


async def make_server(settings: Settings) -> MCPServer[Any]:
    """The real server, plus a ``reload`` tool that syncs the prompts and announces a change."""
    mcp = build_server(settings)
    if not await mcp.list_prompts():
        register_prompts(mcp, settings)  # until build_server registers them itself

    @mcp.tool()
    async def reload(ctx: Context[Any, Any]) -> bool:
        changed = sync_prompts(mcp, settings)
        if changed:
            await notify_prompts_changed(ctx)
        return changed

    return mcp


async def _names(mcp: MCPServer[Any]) -> set[str]:
    return {p.name for p in await mcp.list_prompts()}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_every_template_is_a_prompt_with_its_description_and_a_task_argument(
    settings: Settings, mode: Mode
) -> None:
    catalog = load_catalog(settings.template_dirs())
    async with Client(await make_server(settings), mode=mode) as client:
        prompts = (await client.list_prompts()).prompts
    assert {p.name for p in prompts} == BUILTIN
    for prompt in prompts:
        assert prompt.description == catalog.get(prompt.name).description
        assert prompt.arguments is not None
        # optional: a slash command typed without arguments asks the user for the task
        assert [(a.name, a.required) for a in prompt.arguments] == [("task", False)]
        assert prompt.arguments[0].description


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_rendered_prompt_starts_the_template_and_explains_the_protocol(
    settings: Settings, mode: Mode
) -> None:
    async with Client(await make_server(settings), mode=mode) as client:
        result = await client.get_prompt("bugfix", {"task": "  Login fails on empty password  "})
    assert len(result.messages) == 1
    message = result.messages[0]
    assert message.role == "user"
    assert isinstance(message.content, TextContent)
    text = message.content.text
    assert "<task>\nLogin fails on empty password\n</task>" in text
    assert 'workflow_start` tool with template="bugfix"' in text
    for tool in ("workflow_status", "workflow_approve", "workflow_artifact"):
        assert tool in text
    assert "Never approve or reject on the user's behalf" in text
    # the outline names each stage and its gate, so the assistant can set expectations
    assert "investigation, fix, testing, deployment (human approval; gate: " in text
    assert "- severity (string, optional)" in text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arguments", [{}, {"task": "   "}])
async def test_a_prompt_without_a_task_asks_for_it(
    settings: Settings, mode: Mode, arguments: dict[str, str]
) -> None:
    async with Client(await make_server(settings), mode=mode) as client:
        result = await client.get_prompt("bugfix", arguments)
    message = result.messages[0]
    assert isinstance(message.content, TextContent)
    text = message.content.text
    assert "<task>" not in text
    assert "ask the user what the workflow should accomplish" in text
    assert "<command-args> block" in text  # Claude Code's slash-command arguments


@pytest.mark.anyio
async def test_sync_adds_replaces_and_removes_template_prompts(settings: Settings) -> None:
    mcp = await make_server(settings)
    assert sync_prompts(mcp, settings) is False  # nothing changed since registration

    path = _write(settings, "hotfix", "Patch production fast")
    assert sync_prompts(mcp, settings) is True
    assert await _names(mcp) == BUILTIN | {"hotfix"}
    assert sync_prompts(mcp, settings) is False

    _write(settings, "hotfix", "Patch production carefully")
    assert sync_prompts(mcp, settings) is True
    described = {p.name: p.description for p in await mcp.list_prompts()}
    assert described["hotfix"] == "Patch production carefully"

    path.unlink()
    assert sync_prompts(mcp, settings) is True
    assert await _names(mcp) == BUILTIN


@pytest.mark.anyio
async def test_broken_templates_get_no_prompt_and_keep_the_lower_layer(
    settings: Settings,
) -> None:
    folder = settings.state_dir / "workflows"
    folder.mkdir(parents=True)
    (folder / "broken.yaml").write_text("name: broken\nstages: []\n", encoding="utf-8")
    # a broken override of a built-in keeps the built-in's prompt
    (folder / "bugfix.yaml").write_text("name: bugfix\nstages: [{id: x}]\n", encoding="utf-8")
    mcp = await make_server(settings)
    assert await _names(mcp) == BUILTIN
    described = {p.name: p.description for p in await mcp.list_prompts()}
    assert (
        described["bugfix"] == load_catalog(settings.template_dirs()[:1]).get("bugfix").description
    )


@pytest.mark.anyio
async def test_sync_leaves_prompts_it_did_not_add(settings: Settings) -> None:
    mcp = await make_server(settings)

    @mcp.prompt(name="handwritten")
    def handwritten() -> str:
        return "hello"

    _write(settings, "hotfix", "Patch production fast")
    assert sync_prompts(mcp, settings) is True
    assert await _names(mcp) == BUILTIN | {"hotfix", "handwritten"}


@pytest.mark.anyio
async def test_prompt_list_change_reaches_handshake_era_clients(settings: Settings) -> None:
    notified = anyio.Event()

    async def handler(message: object) -> None:
        if isinstance(message, types.PromptListChangedNotification):
            notified.set()

    mcp = await make_server(settings)
    async with Client(mcp, mode="legacy", message_handler=handler) as client:
        _write(settings, "hotfix", "Patch production fast")
        result = await client.call_tool("reload", {})
        assert result.structured_content == {"result": True}
        with anyio.fail_after(5):
            await notified.wait()
        names = {p.name for p in (await client.list_prompts()).prompts}
    assert "hotfix" in names


@pytest.mark.anyio
async def test_prompt_list_change_reaches_listening_clients(settings: Settings) -> None:
    mcp = await make_server(settings)
    async with Client(mcp) as client:
        async with client.listen(prompts_list_changed=True) as sub:
            _write(settings, "hotfix", "Patch production fast")
            result = await client.call_tool("reload", {})
            assert result.structured_content == {"result": True}
            with anyio.fail_after(5):
                event = await anext(aiter(sub))
        names = {p.name for p in (await client.list_prompts()).prompts}
    assert isinstance(event, PromptsListChanged)
    assert "hotfix" in names


@pytest.mark.anyio
async def test_workflow_templates_announces_a_template_added_while_serving_handshake_era(
    settings: Settings,
) -> None:
    notified = anyio.Event()

    async def handler(message: object) -> None:
        if isinstance(message, types.PromptListChangedNotification):
            notified.set()

    async with Client(build_server(settings), mode="legacy", message_handler=handler) as client:
        assert {p.name for p in (await client.list_prompts()).prompts} == BUILTIN
        _write(settings, "hotfix", "Patch production fast")
        listed = await client.call_tool("workflow_templates", {})
        assert not listed.is_error
        with anyio.fail_after(5):
            await notified.wait()
        prompts = {p.name: p.description for p in (await client.list_prompts()).prompts}
    assert prompts["hotfix"] == "Patch production fast"


@pytest.mark.anyio
async def test_workflow_templates_announces_a_template_added_while_serving_to_listeners(
    settings: Settings,
) -> None:
    async with Client(build_server(settings)) as client:
        async with client.listen(prompts_list_changed=True) as sub:
            _write(settings, "hotfix", "Patch production fast")
            assert not (await client.call_tool("workflow_templates", {})).is_error
            with anyio.fail_after(5):
                event = await anext(aiter(sub))
        names = {p.name for p in (await client.list_prompts()).prompts}
    assert isinstance(event, PromptsListChanged)
    assert names == BUILTIN | {"hotfix"}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_workflow_start_with_a_new_template_lists_its_prompt(
    settings: Settings, mode: Mode
) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        _write(settings, "hotfix", "Patch production fast")
        started = await client.call_tool(
            "workflow_start", {"template": "hotfix", "task": "fix the login"}
        )
        assert not started.is_error
        names = {p.name for p in (await client.list_prompts()).prompts}
    assert names == BUILTIN | {"hotfix"}


@pytest.mark.anyio
async def test_workflow_templates_sends_no_list_changed_when_nothing_changed(
    settings: Settings,
) -> None:
    seen: list[str] = []

    async def handler(message: object) -> None:
        if isinstance(message, types.PromptListChangedNotification):
            seen.append("prompts")

    async with Client(build_server(settings), mode="legacy", message_handler=handler) as client:
        await client.call_tool("workflow_templates", {})
        # a later announcement would arrive before this answer: the session is ordered
        await client.list_prompts()
    assert seen == []
