"""Calling the runner for one attempt so that the stage timeout and a cancel always take effect.

anyio cancellation reaches a runner only at its next checkpoint. A runner waiting on a worker
thread that cannot be abandoned (a blocking call in ``anyio.to_thread.run_sync``, a library
that shields itself) holds its cancel scope until the thread returns: the timeout never fired
and ``cancel`` marked the run cancelled while the stage stayed ``running``.

So the runner runs in a task of its own, in the driver's task group, and the attempt waits for
whichever comes first: the runner's result, the deadline, or a cancel of the attempt. On a
deadline or a cancel the runner's task is cancelled and given ``grace`` seconds for its own
cleanup (killing process groups, recording the spend of the requests it made); then the
attempt goes on without it, to be recorded as timed out or cancelled, and whatever the
runner returns later is dropped. Its task still ends with the driver's task group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from stageflow.engine.runner import AttemptRequest, AttemptResult, Runner

__all__ = ["CANCEL_GRACE", "RunnerCall", "call_runner"]

log = logging.getLogger(__name__)

CANCEL_GRACE = 10.0  # seconds a timed-out or cancelled runner gets to stop by itself


@dataclass
class RunnerCall:
    """One runner call in flight: its outcome once ``done``, and the scope that stops it."""

    what: str
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    result: AttemptResult | None = None
    error: Exception | None = None
    abandoned: bool = False

    async def run(self, work: Callable[[], Awaitable[AttemptResult]]) -> None:
        """The runner's task: keep its result or error for the attempt to pick up."""
        try:
            with self.scope:
                try:
                    self.result = await work()
                except Exception as exc:
                    self.error = exc
        finally:  # also when the whole task group is cancelled (the cancel passes this scope)
            self.done.set()
        if self.abandoned:
            log.warning("%s: the runner returned after the attempt ended; dropped", self.what)


async def call_runner(
    tg: TaskGroup | None,
    runner: Runner,
    request: AttemptRequest,
    *,
    timeout: float | None,  # noqa: ASYNC109 -- the stage's limit, applied to a task of its own
) -> AttemptResult | None:
    """``runner.run(request)`` in a task of ``tg``, bounded by ``timeout`` (None or 0: none);
    see the module docstring.

    Returns the runner's result, or None when the deadline passed (the runner was stopped, or
    abandoned after ``CANCEL_GRACE``); re-raises the runner's exception; when the caller is
    cancelled, stops the runner the same way and lets the cancellation through.
    """
    if tg is None:
        raise RuntimeError("call_runner needs the driver's task group")
    what = f"run {request.run_id} stage '{request.stage.id}' attempt {request.attempt}"
    grace = CANCEL_GRACE
    call = RunnerCall(what)
    tg.start_soon(call.run, lambda: runner.run(request))
    timed_out = False
    try:
        with anyio.move_on_after(timeout or math.inf) as deadline:
            await call.done.wait()
        timed_out = deadline.cancelled_caught
    finally:
        if not call.done.is_set():  # the deadline passed, or this attempt is cancelled
            call.scope.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
                await call.done.wait()
            if not call.done.is_set():
                call.abandoned = True
                log.warning(
                    "%s: the runner did not stop within %gs of its cancellation (a blocking "
                    "call in a thread?); the attempt ends without it",
                    what,
                    grace,
                )
    if timed_out:
        return None
    if call.error is not None:
        raise call.error
    return call.result
