"""Hot reload through MCP: files change while the server runs, clients of both protocol eras
hear about it, and the tools serve the new definitions without a restart.

Every change here reaches the server through the real file watcher (no tool call in between
triggers a re-read), except where a test says it checks the catalog tools' own catch-up.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import Client, MCPDeprecationWarning, types
from mcp.shared.subscriptions import PromptsListChanged, ResourceUpdated

from stageflow.config import Settings, load_settings
from stageflow.knowledge.views import knowledge_uri
from stageflow.server.app import build_server
from stageflow.tools.results import agent_uri, template_uri

pytestmark = pytest.mark.anyio

WAIT_S = 10.0

AGENT = """\
---
name: scribe
description: {description}
model: haiku
---
You write things down.
"""

TEMPLATE = """\
name: notes
description: {description}
stages:
  - id: write
    agent: scribe
    produces: [notes]
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    (root / ".stageflow" / "agents").mkdir(parents=True)
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    write_agent(load_settings(root), "Takes notes")
    write_template(load_settings(root), "Write notes")
    return load_settings(root, runner="offline")


def write_agent(settings: Settings, description: str) -> Path:
    path = settings.state_dir / "agents" / "scribe.md"
    path.write_text(AGENT.format(description=description), encoding="utf-8")
    return path


def write_template(settings: Settings, description: str, *, name: str = "notes") -> Path:
    path = settings.state_dir / "workflows" / f"{name}.yaml"
    text = TEMPLATE.format(description=description).replace("name: notes", f"name: {name}")
    atomic_write(path, text)
    return path


def atomic_write(path: Path, text: str) -> None:
    """What editors do: write a temporary file, then rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def data(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


@asynccontextmanager
async def legacy_client(
    settings: Settings, **kw: Any
) -> AsyncIterator[tuple[Client, MemoryObjectReceiveStream[Any]]]:
    """A handshake-era client whose server notifications arrive on a stream."""
    send, received = anyio.create_memory_object_stream[Any](100)

    async def on_message(message: Any) -> None:
        send.send_nowait(message)

    with send, received:
        async with Client(
            build_server(settings), mode="legacy", message_handler=on_message, **kw
        ) as client:
            await ready(client)
            yield client, received


async def ready(client: Client) -> dict[str, Any]:
    """``workflow_templates``: once it answered, the watcher is in place (and a handshake-era
    client is known to the server, so it can be told about changes)."""
    return data(await client.call_tool("workflow_templates", {}))


async def next_of(received: MemoryObjectReceiveStream[Any], kind: type[Any]) -> Any:
    """The next notification of ``kind`` (others are skipped), within ``WAIT_S``."""
    with anyio.fail_after(WAIT_S):
        while True:
            message = await received.receive()
            if isinstance(message, kind):
                return message


# -- agents --------------------------------------------------------------------------------


async def test_an_edited_agent_file_is_served_without_a_restart(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        await ready(client)
        before = data(await client.call_tool("workflow_templates", {"detail": "full"}))["full"]
        scribe = next(a for a in before["agents"] if a["name"] == "scribe")
        assert scribe["description"] == "Takes notes"

        async with client.listen(resource_subscriptions=[agent_uri("scribe")]) as sub:
            write_agent(settings, "Keeps minutes of every meeting")
            with anyio.fail_after(WAIT_S):
                event = await anext(aiter(sub))  # the watcher saw it: no tool call in between
        after = data(await client.call_tool("workflow_templates", {"detail": "full"}))["full"]
        text = (await client.read_resource(agent_uri("scribe"))).contents[0]
    assert event == ResourceUpdated(uri=agent_uri("scribe"))
    scribe = next(a for a in after["agents"] if a["name"] == "scribe")
    assert scribe["description"] == "Keeps minutes of every meeting"
    assert scribe["hash"] != next(a for a in before["agents"] if a["name"] == "scribe")["hash"]
    assert isinstance(text, types.TextResourceContents)
    assert "Keeps minutes of every meeting" in text.text


async def test_a_handshake_era_subscriber_hears_that_an_agent_changed(
    settings: Settings,
) -> None:
    async with legacy_client(settings) as (client, received):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(agent_uri("scribe"))
        write_agent(settings, "Keeps minutes")
        note = await next_of(received, types.ResourceUpdatedNotification)
        listed = data(await client.call_tool("workflow_templates", {}))
    assert str(note.params.uri) == agent_uri("scribe")
    assert any(a["description"] == "Keeps minutes" for a in listed["agents"])


async def test_workflow_templates_sees_an_agent_saved_a_moment_ago(settings: Settings) -> None:
    """The catalog tools catch up with the files themselves (read-your-writes), even with the
    watcher off."""
    server = build_server(settings, watch_files=False)
    async with Client(server) as client:
        write_agent(settings, "Drafts the minutes")
        listed = data(await client.call_tool("workflow_templates", {}))
    assert any(a["description"] == "Drafts the minutes" for a in listed["agents"])


# -- templates -----------------------------------------------------------------------------


async def test_a_changed_template_sends_prompts_list_changed_to_handshake_era_clients(
    settings: Settings,
) -> None:
    async with legacy_client(settings) as (client, received):
        write_template(settings, "Write careful notes")
        await next_of(received, types.PromptListChangedNotification)
        prompts = {p.name: p.description for p in (await client.list_prompts()).prompts}
    assert prompts["notes"] == "Write careful notes"


async def test_a_changed_template_reaches_listening_clients_of_the_2026_era(
    settings: Settings,
) -> None:
    async with Client(build_server(settings)) as client:
        assert client.protocol_version == "2026-07-28"
        await ready(client)
        async with client.listen(
            prompts_list_changed=True, resource_subscriptions=[template_uri("notes")]
        ) as sub:
            write_template(settings, "Write careful notes")
            events: list[Any] = []
            with anyio.fail_after(WAIT_S):
                async for event in sub:
                    events.append(event)
                    if len(events) == 2:
                        break
        prompts = {p.name: p.description for p in (await client.list_prompts()).prompts}
    assert PromptsListChanged() in events
    assert ResourceUpdated(uri=template_uri("notes")) in events
    assert prompts["notes"] == "Write careful notes"


async def test_added_and_deleted_templates_come_and_go_as_prompts(settings: Settings) -> None:
    async with legacy_client(settings) as (client, received):
        path = write_template(settings, "Summarise a meeting", name="minutes")
        await next_of(received, types.PromptListChangedNotification)
        added = {p.name for p in (await client.list_prompts()).prompts}
        path.unlink()
        await next_of(received, types.PromptListChangedNotification)
        removed = {p.name for p in (await client.list_prompts()).prompts}
    assert "minutes" in added
    assert "minutes" not in removed and "notes" in removed


async def test_a_broken_template_shows_its_error_and_its_last_good_version_still_starts(
    settings: Settings,
) -> None:
    logs: list[types.LoggingMessageNotificationParams] = []
    warned = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)
        if "notes.yaml" in str(params.data):
            warned.set()

    async with legacy_client(settings, logging_callback=on_log) as (client, _):
        path = settings.state_dir / "workflows" / "notes.yaml"
        atomic_write(path, "name: notes\nstages: [{id: write, agent: nobody-by-this-name}]\n")
        with anyio.fail_after(WAIT_S):
            await warned.wait()  # the watcher's reload, announced as an MCP log message
        listed = data(await client.call_tool("workflow_templates", {}))
        started = data(
            await client.call_tool("workflow_start", {"template": "notes", "task": "write it"})
        )
        prompts = {p.name: p.description for p in (await client.list_prompts()).prompts}
    assert any("notes.yaml" in e and "nobody-by-this-name" in e for e in listed["errors"])
    notes = next(t for t in listed["templates"] if t["name"] == "notes")
    assert notes["description"] == "Write notes"  # the last good version
    assert started["template"] == "notes" and started["stages"] == ["write"]
    assert prompts["notes"] == "Write notes"
    warning = next(p for p in logs if "notes.yaml" in str(p.data))
    assert warning.level == "warning"


# -- knowledge -----------------------------------------------------------------------------


async def test_an_edited_knowledge_file_is_found_without_a_reindex(settings: Settings) -> None:
    folder = settings.state_dir / "knowledge" / "guidelines"
    folder.mkdir(parents=True)
    doc = folder / "logging.md"
    doc.write_text("# Logging\n\nLog to stderr with the stdlib logging module.\n", "utf-8")
    uri = knowledge_uri("guidelines/logging")
    async with Client(build_server(settings)) as client:
        await ready(client)
        first = data(await client.call_tool("knowledge_lookup", {"query": "stderr logging"}))
        assert [r["id"] for r in first["results"]] == ["guidelines/logging"]
        async with client.listen(resource_subscriptions=[uri]) as sub:
            atomic_write(doc, "# Logging\n\nStructured logs go to journald via systemd.\n")
            with anyio.fail_after(WAIT_S):
                event = await anext(aiter(sub))  # re-indexed: its resource changed
        found = data(await client.call_tool("knowledge_lookup", {"query": "journald"}))
        # the word is gone from the index (the vector ranking would still name the only page)
        gone = data(await client.call_tool("knowledge_lookup", {"query": "stderr", "mode": "bm25"}))
    assert event == ResourceUpdated(uri=uri)
    assert found["results"][0]["id"] == "guidelines/logging"
    assert gone["results"] == []
