"""Where notices go: a webhook (JSON POST), the desktop (``notify-send``) and a command (the
notice as JSON on stdin). Each ``send`` raises on failure; the dispatcher retries and logs."""

from __future__ import annotations

import json
import shutil
from typing import Protocol

import anyio
import httpx

from stageflow.notify.notices import Notice

__all__ = ["Channel", "CommandChannel", "DeliveryFailed", "DesktopChannel", "WebhookChannel"]


class DeliveryFailed(Exception):
    """A channel could not deliver a notice (the message says why)."""


class Channel(Protocol):
    name: str

    async def send(self, notice: Notice) -> None: ...


class WebhookChannel:
    """POST the notice as JSON (with Slack's ``text``); any answer but 2xx is a failure."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self.name = "webhook"
        self._timeout = timeout_s

    async def send(self, notice: Notice) -> None:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                r = await client.post(self.url, json=notice.payload())
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"webhook {self.url}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= r.status_code < 300:
            raise DeliveryFailed(f"webhook {self.url} answered {r.status_code}")


class DesktopChannel:
    """``notify-send SUMMARY BODY`` where it is installed; elsewhere nothing (logged once)."""

    def __init__(self, *, timeout_s: float, program: str = "notify-send") -> None:
        self.name = "desktop"
        self.program = shutil.which(program)
        self._timeout = timeout_s

    async def send(self, notice: Notice) -> None:
        if self.program is None:
            return
        summary = f"stageflow: {notice.kind.replace('_', ' ')}"
        await _run(
            [self.program, "--app-name=stageflow", summary, notice.text], None, self._timeout
        )


class CommandChannel:
    """Run ``argv`` with the notice's JSON on stdin and ``STAGEFLOW_NOTICE_*`` in the
    environment; a non-zero exit is a failure. No shell is involved."""

    def __init__(self, argv: tuple[str, ...], *, timeout_s: float) -> None:
        self.argv = list(argv)
        self.name = "command"
        self._timeout = timeout_s

    async def send(self, notice: Notice) -> None:
        data = json.dumps(notice.payload()).encode()
        await _run(self.argv, data, self._timeout, notice)


async def _run(
    argv: list[str], stdin: bytes | None, timeout_s: float, notice: Notice | None = None
) -> None:
    import os

    env = dict(os.environ)
    if notice is not None:
        env.update(
            STAGEFLOW_NOTICE_KIND=notice.kind,
            STAGEFLOW_NOTICE_RUN=notice.run_id,
            STAGEFLOW_NOTICE_STAGE=notice.stage or "",
            STAGEFLOW_NOTICE_TEXT=notice.text,
        )
    try:
        with anyio.fail_after(timeout_s):
            result = await anyio.run_process(argv, input=stdin, check=False, env=env)
    except TimeoutError as exc:
        raise DeliveryFailed(f"{argv[0]} did not finish within {timeout_s:g}s") from exc
    except OSError as exc:
        raise DeliveryFailed(f"{argv[0]}: {exc}") from exc
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip()[-300:]
        raise DeliveryFailed(f"{argv[0]} exited {result.returncode}: {err}")
