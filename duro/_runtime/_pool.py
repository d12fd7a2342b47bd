"""A bounded pool of handlers that work items reach from a fetch loop or by hand-over."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

T = TypeVar("T")


class WorkPool(Generic[T]):
    """At most ``concurrency`` items are handled at once; every item needs a reserved slot.

    Slots are reserved *before* the store is asked for work, so nothing is locked without
    capacity to run it. Besides the pool's own fetch loop, a :class:`~._handover.HandOver`
    may reserve slots without waiting (:meth:`try_reserve`) and start items it fetched
    together with a commit (:meth:`start`): ``receives_hand_overs`` says whether one does.
    """

    def __init__(self, concurrency: int, *, receives_hand_overs: bool = False) -> None:
        self._free = anyio.Semaphore(max(1, concurrency))
        self.receives_hand_overs = receives_hand_overs
        self._handle: Callable[[T], Awaitable[None]] | None = None
        self._task_group: TaskGroup | None = None
        self._stopping: anyio.Event | None = None
        self._closing = False
        self._lent = 0
        self._returned: anyio.Event | None = None
        self.active = 0
        """Items started and not finished: counted from :meth:`start`, not from when the
        handler first runs, so an item is never in neither the store's lock nor this count."""
        self.changes = 0
        """Items started plus items finished: unchanged between two reads means no item
        started or finished in between."""
        self._held_back: anyio.Event | None = None
        """Set (and dropped) by :meth:`go_on`; present while the pool takes no new items."""

    @contextlib.asynccontextmanager
    async def running(
        self, handle: Callable[[T], Awaitable[None]], stopping: anyio.Event
    ) -> AsyncIterator[None]:
        """Handle items with ``handle`` while open; on exit, wait for every handler and
        lent-out slot. Hand-overs end as soon as ``stopping`` is set: shutdown takes on no
        new work."""
        async with anyio.create_task_group() as tg:
            self._handle, self._task_group = handle, tg
            self._stopping, self._closing = stopping, False
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
        """Wait for one free slot (and for :meth:`go_on` while held back), then take up to
        ``most`` in all without waiting."""
        while True:
            while self._held_back is not None:
                await self._held_back.wait()
            await self._free.acquire()
            if self._held_back is None:
                return 1 + self._take(most - 1)
            self._free.release()  # held back while it waited for the slot

    def try_reserve(self, most: int) -> int:
        """Take up to ``most`` free slots without waiting (0 while closed, full or held
        back).

        The caller owes each one back: :meth:`start` an item in it or :meth:`release` it.
        """
        if self._closing or self._stopping is None or self._stopping.is_set():
            return 0
        if self._held_back is not None:
            return 0
        taken = self._take(most)
        self._lent += taken
        return taken

    def hold_back(self) -> None:
        """Take no new items (neither fetched nor handed over) until :meth:`go_on`; the
        items already started run on."""
        if self._held_back is None:
            self._held_back = anyio.Event()

    def go_on(self) -> None:
        if self._held_back is not None:
            self._held_back.set()
            self._held_back = None

    def release(self, count: int, *, lent: bool = False) -> None:
        for _ in range(count):
            self._free.release()
        self._settle(count, lent)

    def start(self, item: T, *, lent: bool = False) -> None:
        """Run ``item`` in a slot reserved for it."""
        if self._task_group is None:
            raise RuntimeError("items start only while the pool runs")
        self.active += 1
        self.changes += 1
        self._task_group.start_soon(self._run, item)
        self._settle(1, lent)

    async def _run(self, item: T) -> None:
        try:
            if self._handle is not None:
                await self._handle(item)
        finally:
            self.active -= 1
            self.changes += 1
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
