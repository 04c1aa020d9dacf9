"""The change feed behind the dashboard's Server-Sent Events.

A run changes when someone appends to its log: this process (``Store.on_append`` tells at once)
or another process on the same ``state.db`` (SQLite's ``data_version`` moves; it is polled,
cheaply, every ``poll_s``). Only then is the watched head read again: one run's ``last_seq``,
or for the run list the newest runs' heads. Like ``server/notify.py``, a redundant wake-up is
harmless and a missed one is not, so every wait is bounded by the poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from stageflow.store.store import Store

__all__ = ["POLL_S", "watch_changes"]

POLL_S = 0.5
LIST_HEADS = 200  # the run list watches this many newest runs (and every active one)


class _Wake:
    def __init__(self) -> None:
        self.event = anyio.Event()

    def set(self, *_args: object) -> None:
        self.event.set()

    async def wait(self, seconds: float) -> bool:
        """Wait for a wake-up or the timeout; True if woken."""
        with anyio.move_on_after(seconds):
            await self.event.wait()
        woken = self.event.is_set()
        self.event = anyio.Event()
        return woken


async def _head(store: Store, run_id: str | None) -> object:
    if run_id is not None:
        return (await store.get_run(run_id)).last_seq
    newest = await store.list_runs(limit=LIST_HEADS)
    active = await store.list_runs(limit=-1, statuses=("running", "waiting", "paused"))
    return frozenset((r.run_id, r.last_seq) for r in (*newest, *active))


async def watch_changes(
    store: Store,
    run_id: str | None = None,
    *,
    poll_s: float = POLL_S,
    idle_s: float = 15.0,
    seen: object | None = None,
) -> AsyncIterator[object | None]:
    """Yield the watched head each time it moves, and ``None`` after ``idle_s`` without a
    change (a keep-alive); forever: the caller stops iterating.

    ``run_id`` watches one run (``NotFound`` at once if there is none); ``None`` the run list.
    ``seen`` is the head the caller's page was rendered from: if the run moved since (between
    rendering the page and opening the stream), the first change is yielded at once.
    """
    wake = _Wake()

    def listener(changed: str, _holder: str | None) -> None:
        if run_id is None or changed == run_id:
            wake.set()

    unsubscribe = store.on_append(listener)
    try:
        last = await _head(store, run_id)
        if seen is not None and seen != last:
            yield last
        version = await store.data_version()
        quiet_since = anyio.current_time()
        while True:
            woken = await wake.wait(poll_s)
            now = await store.data_version()
            if now == version and not woken:
                if anyio.current_time() - quiet_since >= idle_s:
                    quiet_since = anyio.current_time()
                    yield None
                continue
            version = now
            head = await _head(store, run_id)
            if head != last:
                last = head
                quiet_since = anyio.current_time()
                yield head
    finally:
        unsubscribe()
