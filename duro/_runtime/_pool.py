"""A bounded pool of handlers that work items reach from a fetch loop or by hand-over."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")
E = TypeVar("E")


class WorkPool(Generic[T]):
    """At most ``concurrency`` items are handled at once; every item needs a reserved slot.

    Slots are reserved *before* the store is asked for work, so nothing is locked without
    capacity to run it. Besides the pool's own fetch loop, another component may reserve
    slots without waiting (:meth:`try_reserve`) and hand over items it fetched together with
    its own commits (:meth:`start`).
    """

    def __init__(self, concurrency: int, handle: Callable[[T], Awaitable[None]]) -> None:
        self._free = anyio.Semaphore(max(1, concurrency))
        self._handle = handle
        self._task_group: TaskGroup | None = None
        self._stopping: anyio.Event | None = None
        self._closing = False
        self._lent = 0
        self._returned: anyio.Event | None = None
        self.shared = False
        """Whether items are also handed over (see :class:`HandOver`)."""

    @contextlib.asynccontextmanager
    async def running(self, stopping: anyio.Event) -> AsyncIterator[None]:
        """Handle items while open; on exit, wait for every handler and lent-out slot.
        Hand-overs end as soon as ``stopping`` is set: shutdown takes on no new work."""
        async with anyio.create_task_group() as tg:
            self._task_group, self._stopping, self._closing = tg, stopping, False
            try:
                yield
            finally:
                # Hand-overs stop here; one already under way still lands in this group.
                self._closing = True
                if self._lent:
                    self._returned = anyio.Event()
                    with anyio.CancelScope(shield=True):
                        await self._returned.wait()
        self._task_group = None

    async def reserve(self, most: int) -> int:
        """Wait for one free slot, then take up to ``most`` in all without waiting."""
        await self._free.acquire()
        return 1 + self._take(most - 1)

    def try_reserve(self, most: int) -> int:
        """Take up to ``most`` free slots without waiting (0 while closed or full).

        The caller owes each one back: :meth:`start` an item in it or :meth:`release` it.
        """
        if self._closing or self._stopping is None or self._stopping.is_set():
            return 0
        taken = self._take(most)
        self._lent += taken
        return taken

    def release(self, count: int, *, lent: bool = False) -> None:
        for _ in range(count):
            self._free.release()
        self._settle(count, lent)

    def start(self, item: T, *, lent: bool = False) -> None:
        """Run ``item`` in a slot reserved for it."""
        assert self._task_group is not None, "items start only while the pool runs"
        self._task_group.start_soon(self._run, item)
        self._settle(1, lent)

    async def _run(self, item: T) -> None:
        try:
            await self._handle(item)
        finally:
            self._free.release()

    def _take(self, wanted: int) -> int:
        taken = 0
        while taken < wanted:
            try:
                self._free.acquire_nowait()
            except anyio.WouldBlock:
                break
            taken += 1
        return taken

    def _settle(self, count: int, lent: bool) -> None:
        if lent and count:
            self._lent -= count
            if self._lent == 0 and self._returned is not None:
                self._returned.set()


@dataclass(frozen=True, slots=True)
class HandOver(Generic[R, T]):
    """Items one component fetches along with its own commits, for another's pool: the
    turn dispatcher's commits bring back the activities they scheduled, the worker's
    completions the turns they made due, one store round trip instead of two."""

    pool: WorkPool[T]
    request: Callable[[int], R]
    """The fetch request for up to ``n`` items, as the receiving pool's own loop makes it."""
    limit: int

    def __post_init__(self) -> None:
        self.pool.shared = True

    async def commit(
        self,
        commits: Sequence[C],
        plain: Callable[[Sequence[C]], Awaitable[list[E]]],
        combined: Callable[[Sequence[C], R], Awaitable[tuple[list[E], list[T]]]],
    ) -> list[E]:
        """``combined`` when the pool has free slots (its items start there), else ``plain``."""
        slots = self.pool.try_reserve(self.limit)
        if slots == 0:
            return await plain(commits)
        try:
            results, items = await combined(commits, self.request(slots))
        except BaseException:
            self.pool.release(slots, lent=True)
            raise
        for item in items:
            self.pool.start(item, lent=True)
        self.pool.release(slots - len(items), lent=True)
        return results
