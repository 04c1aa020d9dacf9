"""The process-wide cap on concurrently running stage attempts, shared by all run drivers.

Non-blocking on purpose: a driver that finds no free slot does not record ``AttemptStarted``
(nothing may be logged as started before it can start); it waits, and is woken when any slot is
released.
"""

from __future__ import annotations

from typing import Protocol


class _Wakeable(Protocol):
    def wake(self) -> None: ...


class Slots:
    """A counter with wake-ups for the drivers that were refused a slot."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the global concurrency limit must be at least 1")
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._refused: list[_Wakeable] = []

    def try_acquire(self, who: _Wakeable) -> bool:
        if self.in_use >= self.limit:
            if who not in self._refused:
                self._refused.append(who)
            return False
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        return True

    def held(self) -> HeldSlot:
        """A handle for a slot just acquired, released exactly once however often it is asked."""
        return HeldSlot(self)

    def release(self) -> None:
        self.in_use -= 1
        refused, self._refused = self._refused, []
        for who in refused:
            who.wake()


class HeldSlot:
    """One acquired slot; ``release`` is idempotent so error paths can always call it."""

    def __init__(self, slots: Slots) -> None:
        self._slots: Slots | None = slots

    def release(self) -> None:
        if self._slots is not None:
            slots, self._slots = self._slots, None
            slots.release()
