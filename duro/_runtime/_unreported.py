"""Outcomes of activity runs whose report found the work item's lock gone, kept a while.

A run that outlasts its lock (a blocked event loop, a stalled store) may be fetched again by
this same worker. If the new delivery starts while the run is still going, it adopts the run
(``ActivityLeases.adopt``). But the run may end first and its report reach the store after
the new lock was taken, and before the new delivery's task started: the report fails, and
the new delivery would run the activity a second time. It reports the kept outcome under its
own lock instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from .._status import ErrorInfo
from ._activity_context import ActivityContext
from ._leases import Key


@dataclass(slots=True)
class KeptOutcome:
    ctx: ActivityContext
    result: msgspec.Raw | None
    error: ErrorInfo | None
    until: float
    """Monotonic time after which it is forgotten."""


class UnreportedOutcomes:
    """Outcomes by activity key. One nobody asks for (the item was withdrawn, or another
    worker took it) is forgotten after a lock timeout, and at most ``capacity`` are kept."""

    def __init__(self, keep_for: float, capacity: int = 1024) -> None:
        self._keep_for = max(1.0, keep_for)
        self._capacity = capacity
        self._kept: dict[Key, KeptOutcome] = {}

    def keep(
        self, key: Key, ctx: ActivityContext, result: msgspec.Raw | None, error: ErrorInfo | None
    ) -> None:
        now = time.monotonic()
        for old in [k for k, kept in self._kept.items() if kept.until <= now]:
            del self._kept[old]
        if len(self._kept) >= self._capacity:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = KeptOutcome(ctx, result, error, now + self._keep_for)

    def take(self, key: Key) -> KeptOutcome | None:
        kept = self._kept.pop(key, None)
        return kept if kept is not None and kept.until > time.monotonic() else None
