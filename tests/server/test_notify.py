"""Resource-updated notifications for ``stageflow://runs/{run_id}``: a subscriber in either
protocol era hears about a change to its run, whether this process or another one made it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import Client, MCPDeprecationWarning, types
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent

from stageflow.config import Settings, load_settings
from stageflow.engine.service import Service
from stageflow.server.app import build_server
from stageflow.server.notify import RunNotifier
from stageflow.store.store import Store
from stageflow.tools.results import run_uri

GATED = """\
name: gated
description: One stage a human approves
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: required
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    workflows = root / ".stageflow" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "gated.yaml").write_text(GATED, encoding="utf-8")
    return load_settings(root)


def data(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def start_and_wait_for_gate(client: Client) -> str:
    """Start a gated run and return its id once it waits for the human (bounded)."""
    run_id = str(
        data(await client.call_tool("workflow_start", {"template": "gated", "task": "x"}))["run_id"]
    )
    with anyio.fail_after(20):
        while (
            data(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]["status"]
            != "waiting"
        ):
            await client.call_tool("workflow_status", {"run_id": run_id, "wait_seconds": 5})
    return run_id


@pytest.mark.anyio
async def test_a_listening_client_hears_that_its_run_changed(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        assert client.protocol_version == "2026-07-28"
        run_id = await start_and_wait_for_gate(client)
        async with client.listen(resource_subscriptions=[run_uri(run_id)]) as sub:
            data(
                await client.call_tool(
                    "workflow_approve", {"run_id": run_id, "decision": "approve"}
                )
            )
            with anyio.fail_after(10):
                event = await anext(aiter(sub))
    assert event == ResourceUpdated(uri=f"stageflow://runs/{run_id}")


@pytest.mark.anyio
async def test_a_handshake_era_subscriber_gets_resource_updated_for_its_run(
    settings: Settings,
) -> None:
    send, received = anyio.create_memory_object_stream[str](100)

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            send.send_nowait(str(message.params.uri))

    with send, received:
        async with Client(
            build_server(settings), mode="legacy", message_handler=on_message
        ) as client:
            resources = client.server_capabilities.resources
            assert resources is not None and resources.subscribe
            run_id = await start_and_wait_for_gate(client)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # the era's own method
                await client.subscribe_resource(run_uri(run_id))
            data(
                await client.call_tool(
                    "workflow_approve", {"run_id": run_id, "decision": "approve"}
                )
            )
            with anyio.fail_after(10):
                uri = await received.receive()
    assert uri == f"stageflow://runs/{run_id}"


async def next_update(events: MemoryObjectReceiveStream[ServerEvent]) -> str:
    with anyio.fail_after(10):
        event = await events.receive()
    assert isinstance(event, ResourceUpdated)
    return event.uri


@pytest.mark.anyio
async def test_changes_made_by_another_process_are_announced(settings: Settings) -> None:
    bus = InMemorySubscriptionBus()
    send, events = anyio.create_memory_object_stream[ServerEvent](100)
    bus.subscribe(send.send_nowait)
    stop = anyio.Event()
    with send, events:
        async with (
            await Store.open(settings.db_path) as ours,
            await Store.open(settings.db_path) as theirs,
        ):
            notifier = RunNotifier(ours, bus, poll_s=0.05)
            async with anyio.create_task_group() as tg:
                await tg.start(notifier.run, stop)  # watching from here on
                other = Service(settings, theirs, runner_label="offline")  # the "other process"
                run_id = (await other.start_run("gated", "x")).run_id
                assert await next_update(events) == run_uri(run_id)
                await other.control(run_id, "cancel", reason="not needed")
                assert await next_update(events) == run_uri(run_id)  # it left the active runs
                stop.set()
        assert events.statistics().current_buffer_used == 0  # one notification per change


class FakeConnection:
    """One client: what it was sent, and whether it is gone."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.uris: list[str] = []


class FakeSession:
    """A per-request ``ServerSession`` proxy of one client, as the SDK builds them."""

    def __init__(self, connection: FakeConnection) -> None:
        self._connection = connection

    async def send_resource_updated(self, uri: str) -> None:
        if self._connection.broken:
            raise anyio.ClosedResourceError
        self._connection.uris.append(uri)


def proxy(connection: FakeConnection) -> ServerSession:
    return cast(ServerSession, FakeSession(connection))


@pytest.mark.anyio
async def test_each_subscribed_client_gets_one_update_until_it_unsubscribes_or_breaks(
    settings: Settings,
) -> None:
    async with await Store.open(settings.db_path) as store:
        notifier = RunNotifier(store, InMemorySubscriptionBus())
        uri = run_uri("r1")
        kept, left, broken = FakeConnection(), FakeConnection(), FakeConnection(broken=True)
        for client in (kept, kept, left, broken):  # `kept` subscribes twice
            notifier.subscribe(uri, proxy(client))
        notifier.subscribe(run_uri("r2"), proxy(left))

        await notifier.publish("r1")
        notifier.unsubscribe(uri, proxy(left))  # another request, another proxy, same client
        await notifier.publish("r1")
        await notifier.publish("r2")

    assert kept.uris == [uri, uri]
    assert left.uris == [uri, run_uri("r2")]
    assert notifier.subscribers(uri) == 1  # the broken client was dropped on its first failure
