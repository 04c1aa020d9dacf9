"""The notifier: the scheduler's event sink turns events into notices and queues them (never
blocking the driver); a task delivers each notice to every channel on its own, retrying with
exponential backoff. A channel that keeps failing is logged and given up on for that notice;
a run never waits for a notification."""

from __future__ import annotations

import logging
import math

import anyio
from anyio.abc import TaskStatus

from stageflow import events as ev
from stageflow.config import Settings
from stageflow.engine.state import RunState
from stageflow.notify.channels import (
    Channel,
    CommandChannel,
    DeliveryFailed,
    DesktopChannel,
    WebhookChannel,
)
from stageflow.notify.config import NotifyConfig, notify_config
from stageflow.notify.notices import Notice, notice_for

__all__ = ["Notifier", "build_notifier"]

log = logging.getLogger(__name__)

QUEUE = 256


class Notifier:
    """See the module docstring. ``sink`` is an ``EventSink``; ``run`` the delivery task."""

    def __init__(self, config: NotifyConfig, channels: list[Channel]) -> None:
        self.config = config
        self.channels = channels
        self._send, self._receive = anyio.create_memory_object_stream[Notice](QUEUE)
        self._busy = 0
        self._idle = anyio.Event()
        self._idle.set()
        #: (channel, notice kind, run id, ok) per finished delivery, for tests and logs
        self.delivered: list[tuple[str, str, str, bool]] = []

    def sink(self, env: ev.Envelope, state: RunState) -> None:
        notice = notice_for(env, state, self.config.dashboard_url)
        if notice is None or notice.kind not in self.config.events:
            return
        try:
            self._send.send_nowait(notice)
        except anyio.WouldBlock:
            log.warning(
                "notification queue full: dropped %s for run %s", notice.kind, notice.run_id
            )
            return
        self._busy += 1
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued notices until cancelled (start it in a task group)."""
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                async for notice in self._receive:
                    tg.start_soon(self._deliver_all, notice)
        finally:
            self._send.close()
            self._receive.close()

    async def drain(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until every queued notice was delivered or given up."""
        with anyio.move_on_after(limit_s) as scope:
            await self._idle.wait()
        if scope.cancelled_caught:
            log.warning("%d notification(s) still undelivered at exit", self._busy)

    async def _deliver_all(self, notice: Notice) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for channel in self.channels:
                    tg.start_soon(self._deliver, channel, notice)
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _deliver(self, channel: Channel, notice: Notice) -> None:
        tries = 1 + self.config.retries
        for attempt in range(1, tries + 1):
            try:
                await channel.send(notice)
            except Exception as exc:  # a channel's failure is never the run's
                reason = str(exc) if isinstance(exc, DeliveryFailed) else repr(exc)
                if attempt == tries:
                    log.warning(
                        "notification %s for run %s via %s failed %d time(s), giving up: %s",
                        notice.kind, notice.run_id, channel.name, attempt, reason,
                    )  # fmt: skip
                    self.delivered.append((channel.name, notice.kind, notice.run_id, False))
                    return
                delay = min(self.config.backoff_s * math.pow(2, attempt - 1), 300.0)
                log.info(
                    "notification via %s failed (%s); retry %d in %.2fs",
                    channel.name, reason, attempt, delay,
                )  # fmt: skip
                await anyio.sleep(delay)
                continue
            self.delivered.append((channel.name, notice.kind, notice.run_id, True))
            return


def build_notifier(settings: Settings) -> Notifier | None:
    """The project's notifier, or None when ``[notify]`` names no channel."""
    config = notify_config(settings)
    if not config.any_channel:
        return None
    channels: list[Channel] = []
    if config.webhook:
        channels.append(WebhookChannel(config.webhook, timeout_s=config.timeout_s))
    if config.desktop:
        desktop = DesktopChannel(timeout_s=config.timeout_s)
        if desktop.program is None:
            log.info("[notify] desktop: notify-send is not installed; no desktop notifications")
        else:
            channels.append(desktop)
    if config.command:
        channels.append(CommandChannel(config.command, timeout_s=config.timeout_s))
    return Notifier(config, channels)
