"""``[notify]`` in ``.stageflow/config.toml``::

    [notify]
    webhook = "https://hooks.slack.com/services/..."   # JSON POST, Slack-compatible "text"
    desktop = true                                     # notify-send, where it exists
    command = ["my-notifier", "--channel", "ops"]      # the notice as JSON on stdin
    events = ["human_needed", "run_ended", "budget_paused"]   # the default: all three
    dashboard_url = "http://127.0.0.1:8766/"           # links point at <url>runs/<id>
    retries = 3                                        # after the first try
    backoff_seconds = 1.0                              # doubled each retry
    timeout_seconds = 10.0

A wrong value is a ``SpecError`` naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from stageflow.config import Settings
from stageflow.errors import Problem, SpecError

__all__ = ["EVENT_KINDS", "NoticeKind", "NotifyConfig", "notify_config"]

NoticeKind = Literal["human_needed", "run_ended", "budget_paused"]
EVENT_KINDS: tuple[NoticeKind, ...] = ("human_needed", "run_ended", "budget_paused")


@dataclass(frozen=True)
class NotifyConfig:
    webhook: str | None = None
    desktop: bool = False
    command: tuple[str, ...] = ()
    events: frozenset[str] = frozenset(EVENT_KINDS)
    dashboard_url: str | None = None
    retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 10.0

    @property
    def any_channel(self) -> bool:
        return bool(self.webhook or self.desktop or self.command)


def notify_config(settings: Settings) -> NotifyConfig:
    """The project's ``[notify]`` table (no table: no channels)."""
    raw = settings.extra.get("notify")
    if raw is None:
        return NotifyConfig()
    file = str(settings.config_file)
    if not isinstance(raw, dict):
        raise SpecError(Problem("[notify] must be a table", file=file, path="notify"))

    def bad(key: str, what: str) -> SpecError:
        return SpecError(Problem(f"notify.{key} must be {what}", file=file, path=f"notify.{key}"))

    known = {
        "webhook", "desktop", "command", "events", "dashboard_url", "retries",
        "backoff_seconds", "timeout_seconds",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(
            Problem(
                f"unknown key(s) in [notify]: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
                file=file,
                path=f"notify.{unknown[0]}",
            )
        )
    webhook = raw.get("webhook")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        raise bad("webhook", "an http:// or https:// URL")
    desktop = raw.get("desktop", False)
    if not isinstance(desktop, bool):
        raise bad("desktop", "true or false")
    command = raw.get("command", [])
    if isinstance(command, str):
        command = [command]
    if not (isinstance(command, list) and all(isinstance(c, str) and c for c in command)):
        raise bad("command", "a list of strings (the program and its arguments)")
    events = raw.get("events", list(EVENT_KINDS))
    if not (isinstance(events, list) and all(e in EVENT_KINDS for e in events)):
        raise bad("events", f"a list of {', '.join(EVENT_KINDS)}")
    url = raw.get("dashboard_url")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise bad("dashboard_url", "an http:// or https:// URL")
    retries = _number(raw, "retries", 3, bad, integer=True)
    backoff = _number(raw, "backoff_seconds", 1.0, bad)
    timeout = _number(raw, "timeout_seconds", 10.0, bad)
    if timeout <= 0:
        raise bad("timeout_seconds", "a positive number of seconds")
    return NotifyConfig(
        webhook=webhook,
        desktop=desktop,
        command=tuple(command),
        events=frozenset(events),
        dashboard_url=url,
        retries=int(retries),
        backoff_s=backoff,
        timeout_s=timeout,
    )


def _number(
    raw: dict[str, Any], key: str, default: float, bad: Any, *, integer: bool = False
) -> float:
    value = raw.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < 0 or value > 1_000:
        raise bad(key, "a whole number from 0 to 1000" if integer else "a number from 0 to 1000")
    return float(value)
