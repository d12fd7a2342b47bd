"""Time as the runtime and the stores see it.

Everything that waits for time to pass (timer visibility, lock expiry, poll back-off) goes
through a ``Clock`` so tests can run on ``duro.testing.VirtualClock`` and never sleep.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio


@runtime_checkable
class Clock(Protocol):
    """Where stores and runtimes read the time and wait for it: ``SystemClock`` in
    production, ``duro.testing.VirtualClock`` in tests. Give a store and its runtimes one."""

    def now_ms(self) -> int:
        """Current wall-clock time in milliseconds since the epoch."""
        ...

    async def wait(self, event: anyio.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds of this clock's time pass.

        Returns True if the event was set. ``timeout=None`` waits for the event alone.
        """
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Current wall-clock time in milliseconds since the epoch."""
        return time.time_ns() // 1_000_000

    async def wait(self, event: anyio.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set or ``timeout`` real seconds pass; True if it was set."""
        if timeout is None:
            await event.wait()
            return True
        if timeout <= 0:
            return event.is_set()
        with anyio.move_on_after(timeout):
            await event.wait()
        return event.is_set()

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
