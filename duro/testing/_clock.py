"""A virtual clock: timers and lock expiry advance only when a test says so."""

from __future__ import annotations

import time
from datetime import timedelta

import anyio
import anyio.lowlevel


class VirtualClock:
    """Clock whose time moves only through :meth:`advance`.

    Hand the same instance to the provider and the runtime
    (``InMemoryProvider(clock=clock)``, ``Runtime(..., clock=clock)``); a 30-day timer then
    fires the moment the test advances 30 days, without sleeping.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._now_ms = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        self._sleepers: list[tuple[int, anyio.Event]] = []

    def now_ms(self) -> int:
        """The virtual time in milliseconds since the epoch."""
        return self._now_ms

    def next_deadline_ms(self) -> int | None:
        """The earliest time, still ahead, that a task waits for on this clock; None while no
        task waits with a time-out (one busy with real I/O, say, waits on nothing here)."""
        ahead = [deadline for deadline, _ in self._sleepers if deadline > self._now_ms]
        return min(ahead, default=None)

    async def wait(self, event: anyio.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set or the clock is advanced ``timeout`` seconds past now;
        True if the event was set."""
        if event.is_set():
            return True
        if timeout is None:
            await event.wait()
            return True
        deadline = self._now_ms + max(0, round(timeout * 1000))
        if deadline <= self._now_ms:
            return False
        # Time-outs wake a private event: the caller's event (often shared, like a runtime's
        # stop signal) must only ever be set by its owner.
        wake = anyio.Event()
        entry = (deadline, wake)
        self._sleepers.append(entry)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_when_set, event, tg.cancel_scope)
                tg.start_soon(_cancel_when_set, wake, tg.cancel_scope)
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)
        return event.is_set()

    async def advance(self, delta: float | timedelta) -> None:
        """Move time forward and wake everything whose deadline has passed."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now_ms += round(seconds * 1000)
        for deadline, event in list(self._sleepers):
            if deadline <= self._now_ms:
                event.set()
        # Let woken tasks observe the new time before the caller continues.
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"VirtualClock(now_ms={self._now_ms})"


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
