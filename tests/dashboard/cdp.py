"""A headless Chromium driven over the Chrome DevTools protocol (websockets), for the
dashboard's browser test. Chromium comes from Debian's ``chromium`` package (``.ci/run``
installs it with ``chromium-driver``)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from websockets.asyncio.client import ClientConnection, connect

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab: navigate, evaluate JavaScript, take screenshots."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        await self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        with anyio.fail_after(20):
            while True:
                msg = json.loads(await self._ws.recv())
                if msg.get("id") == ident:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    result: dict[str, Any] = msg.get("result", {})
                    return result

    async def evaluate(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for(
            "document.readyState === 'complete' && !!document.querySelector('main')"
        )

    async def wait_for(self, expression: str, *, limit: float = 10.0) -> None:
        """Poll ``expression`` in the page until it is truthy (bounded)."""
        with anyio.fail_after(limit):
            while True:
                if await self.evaluate(expression):
                    return
                await anyio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        data = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await anyio.Path(path).write_bytes(base64.b64decode(data["data"]))


@asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium (its own profile directory) and one of its pages."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError(
            "the browser test needs Chromium: apt-get install chromium chromium-driver"
        )
    args = [
        exe,
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's own sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1280,1000",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    # Popen returns at once; its stderr is read in a worker thread (_devtools_port, _drain)
    proc = subprocess.Popen(  # noqa: ASYNC220
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    drains: list[threading.Thread] = []
    try:
        port = await anyio.to_thread.run_sync(_devtools_port, proc, drains)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            with anyio.fail_after(10):
                while True:
                    targets = (await http.get("/json/list")).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        break
                    await anyio.sleep(0.05)
        async with connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Runtime.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for t in drains:
            t.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _devtools_port(proc: subprocess.Popen[bytes], drains: list[threading.Thread]) -> int:
    """Chromium prints ``DevTools listening on ws://127.0.0.1:PORT/...`` on stderr."""
    assert proc.stderr is not None
    seen: list[str] = []
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace")
        seen.append(line)
        m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if m:
            # keep reading, so a chatty browser never blocks on a full pipe
            drain = threading.Thread(target=_drain, args=(proc.stderr,), daemon=True)
            drain.start()
            drains.append(drain)
            return int(m.group(1))
    raise RuntimeError("Chromium exited without opening DevTools:\n" + "".join(seen[-20:]))


def _drain(stream: Any) -> None:
    for _ in stream:
        pass
