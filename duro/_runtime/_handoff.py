"""Work this worker lacks the code for, handed to the workers that have it.

During a rolling deployment, old and new workers share one store, and work only the new code
can run (a new orchestration, version or activity) reaches old workers too. Such work goes
straight back to the store, uncounted and visible at once, and the worker that gave it back
leaves it out of its own fetches for a back-off (1 s doubling to a minute; ``HandOffs`` is
the live collection its fetch requests read). The store offers it to the other workers
first, so a new worker gets it within one fetch however many old workers there are. Before,
the work went back with that back-off as its delay for everyone, and an old worker that kept
winning the race for it delayed it by minutes.

This worker's count of looks stands in for the delivery count: on its ``max_deliveries``-th
look it runs the work, which fails with a configuration error naming what is missing, so
work no worker can run still ends (after about four minutes).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from .._clock import Clock
from . import _delays as delays

K = TypeVar("K", bound=Hashable)

CAPACITY = 1024
"""Work left at once; beyond it, work goes back the old way (counted, delayed for everyone)."""

FORGET_AFTER_MS = 10 * 60_000
"""An entry whose back-off ended this long ago was taken by another worker: forget it."""


@dataclass(frozen=True, slots=True)
class PutBack:
    """How to give work back to the store (``Provider.abandon_*``)."""

    delay: float
    undo_delivery_count: bool
    here_again_in: float
    """Seconds until this worker may fetch it again."""


@dataclass(slots=True)
class _Left:
    looks: int
    """How often this worker was handed the work and gave it back."""
    until_ms: int
    """It stays out of this worker's fetches until then."""


class HandOffs(Collection[K], Generic[K]):
    """The work this worker is leaving to others right now (iterating, ``in`` and ``len``
    see only work within its back-off), and how often it left each."""

    def __init__(self, clock: Clock, capacity: int = CAPACITY) -> None:
        self._clock = clock
        self._capacity = capacity
        self._left: dict[K, _Left] = {}

    def look(self, key: K) -> int:
        """The number of this look at ``key``: one more than the times this worker left it."""
        entry = self._left.get(key)
        return 1 if entry is None else entry.looks + 1

    def leave(self, key: K, looks: int, deliveries: int) -> PutBack:
        """Leave ``key`` to the others after its ``looks``-th look (``deliveries`` is the
        store's count): how to put it back. It goes back counted and delayed for everyone, as
        any store allows, when the store ignored an earlier skip of it or too much is left
        already."""
        now = self._clock.now_ms()
        entry = self._left.get(key)
        skipped_before = entry is not None and entry.until_ms > now
        if entry is None and len(self._left) >= self._capacity:
            self._forget(now)
        if skipped_before or (entry is None and len(self._left) >= self._capacity):
            backoff = delays.not_registered(deliveries)
            return PutBack(delay=backoff, undo_delivery_count=False, here_again_in=backoff)
        backoff = delays.not_registered(looks)
        self._left[key] = _Left(looks=looks, until_ms=now + int(backoff * 1000))
        return PutBack(delay=delays.HANDED_OFF, undo_delivery_count=True, here_again_in=backoff)

    def _forget(self, now: int) -> None:
        for key in [k for k, e in self._left.items() if e.until_ms + FORGET_AFTER_MS <= now]:
            del self._left[key]

    def __contains__(self, key: object) -> bool:
        entry = self._left.get(cast(K, key))
        return entry is not None and entry.until_ms > self._clock.now_ms()

    # Every fetch reads these: with nothing left (the usual case) they skip the clock.
    def __iter__(self) -> Iterator[K]:
        if not self._left:
            return iter(())
        now = self._clock.now_ms()
        return iter([key for key, entry in self._left.items() if entry.until_ms > now])

    def __len__(self) -> int:
        if not self._left:
            return 0
        now = self._clock.now_ms()
        return sum(1 for entry in self._left.values() if entry.until_ms > now)


__all__ = ["HandOffs", "PutBack"]
