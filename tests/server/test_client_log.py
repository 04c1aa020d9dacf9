"""Server logs reach handshake-era clients as MCP log messages (stdout stays protocol only)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types

from stageflow.config import load_settings
from stageflow.server.app import build_server


@pytest.mark.anyio
async def test_a_stageflow_warning_reaches_a_handshake_era_client_as_a_log_message(
    tmp_path: Path,
) -> None:
    received: list[types.LoggingMessageNotificationParams] = []
    got = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)
        got.set()

    server = build_server(load_settings(tmp_path / "project", runner="offline"))
    async with Client(server, mode="legacy", logging_callback=on_log) as client:
        await client.call_tool("workflow_status", {})  # any request: the client is now known
        logging.getLogger("stageflow.engine.driver").warning("run r-x: lease lost to %s", "p2")
        logging.getLogger("stageflow.engine.driver").info("below the forwarded level")
        with anyio.fail_after(5):
            await got.wait()
    assert [(p.level, p.logger) for p in received] == [("warning", "stageflow.engine.driver")]
    assert "lease lost to p2" in str(received[0].data)


@pytest.mark.anyio
async def test_logs_are_not_pushed_to_2026_era_clients(tmp_path: Path) -> None:
    received: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    server = build_server(load_settings(tmp_path / "project", runner="offline"))
    async with Client(server, logging_callback=on_log) as client:
        await client.call_tool("workflow_status", {})
        logging.getLogger("stageflow.engine.driver").warning("nobody asked for this")
        await client.call_tool("workflow_status", {})
        await anyio.sleep(0.6)  # longer than the forwarder's 0.25 s cycle: nothing may arrive
    assert received == []
