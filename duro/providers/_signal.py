"""In-process wake-ups for long-polling providers."""

from __future__ import annotations

import anyio

from .._clock import Clock


class WorkSignal:
    """Wakes fetchers waiting in this process when new work is written.

    Each waiter waits on the current ``anyio.Event``; ``notify`` sets it and installs a fresh
    one, so a wake-up is never lost between a fetcher's empty query and its wait.
    """

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        """Wake every fetcher waiting on the current event (new work was written)."""
        if self._event is not None:
            self._event.set()
            self._event = None

    def current(self) -> anyio.Event:
        """The event to wait on; take it *before* querying for work."""
        if self._event is None or self._event.is_set():
            self._event = anyio.Event()
        return self._event

    @staticmethod
    async def wait(clock: Clock, event: anyio.Event, timeout: float) -> bool:
        """Wait until ``event`` fires or ``timeout`` seconds of ``clock`` time pass."""
        if timeout <= 0:
            return event.is_set()
        return await clock.wait(event, timeout)
