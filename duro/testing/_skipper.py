"""Time skipping for ``WorkflowEnvironment``: jump the virtual clock when nothing can run.

The clock jumps only when all of these hold, checked in this order:

1. **The test is waiting** on the environment (a ``wait_for_*`` of ``env.client``, or
   ``env.sleep``). While test code runs between awaits it may still raise an event or start
   an instance, so time holds still: a test that raises an event before it waits can never
   lose a race against a timeout it did not mean to skip. (trio's autojump clock has the same
   rule in its own terms: time jumps when *every* task, the test's included, is blocked.)
2. **Nothing can run.** The runtime holds no turn and no activity that can make progress
   (activities parked in ``ActivityContext.wait_cancelled()`` count as waiting, so a
   per-attempt timeout can fire), and the store holds no visible message or item and no lock
   but those parked activities'. The runtime is read before and after the store: if an item
   started or finished in between, the answer is "not yet". An item being fetched is locked in
   the store or still visible there, and one being processed is counted by the runtime, so no
   work is ever in neither place.
3. **No waiter would return now.** A ``wait_for_status_change`` whose condition already holds
   must see the state that satisfied it, not one a day later.

Then the clock moves to the store's next due time (``QueueDepths.next_due_ms``: the earliest
timer or delayed message), never further, so timers fire at exactly their recorded time and
in order. Locks, visibility and ``ctx.utc_now()`` all follow the virtual clock; client
timeouts, polling and back-off stay on real time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio

from .._runtime import Runtime
from ..providers import Provider
from ._clock import VirtualClock

CHECK_INTERVAL = 0.001
"""Real seconds between two looks while the test waits and something still runs; it grows
to ``MAX_CHECK_INTERVAL`` while nothing changes (an activity that takes real seconds should
not cost a store read every millisecond), and drops back after every jump."""
MAX_CHECK_INTERVAL = 0.01

Satisfied = Callable[[], Awaitable[bool]]


@dataclass(eq=False, slots=True)
class _Waiter:
    satisfied: Satisfied
    until_ms: int | None = None
    """For ``sleep``: virtual time the clock may move to even with nothing due."""


class TimeSkipper:
    """Moves ``clock`` forward while the test waits and nothing can run (see module doc)."""

    def __init__(self, clock: VirtualClock, store: Provider, runtime: Runtime) -> None:
        self._clock = clock
        self._store = store
        self._runtime = runtime
        self._waiters: list[_Waiter] = []
        # Bumped whenever a wait starts or ends. A look at the store that began before the
        # test stopped waiting may predate what the test did next (raise an event, say): a
        # jump is made only if no wait started or ended while it was being decided.
        self._generation = 0
        self._waiting = anyio.Event()
        self.jumps = 0
        """How many times the clock was moved (for tests of the environment itself)."""

    @contextlib.contextmanager
    def waiting(self, satisfied: Satisfied) -> Iterator[None]:
        """Let time skip while the body runs, unless ``satisfied()`` already holds."""
        waiter = _Waiter(satisfied)
        self._add(waiter)
        try:
            yield
        finally:
            self._remove(waiter)

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, running everything that falls due on the way,
        and return once nothing can run at the new time."""
        until = self._clock.now_ms() + max(0, round(seconds * 1000))
        waiter = _Waiter(satisfied=_never, until_ms=until)
        self._add(waiter)
        try:
            # Polled: "nothing can run" is a question to the store, not an event to wait on.
            while not (self._clock.now_ms() >= until and await self.idle()):  # noqa: ASYNC110
                await anyio.sleep(CHECK_INTERVAL)
        finally:
            self._remove(waiter)

    def _add(self, waiter: _Waiter) -> None:
        self._waiters.append(waiter)
        self._generation += 1
        self._waiting.set()

    def _remove(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        self._generation += 1

    async def run(self) -> None:
        """Skip time whenever the conditions hold, until cancelled."""
        interval = CHECK_INTERVAL
        while True:
            if not self._waiters:
                self._waiting = anyio.Event()
                await self._waiting.wait()
                interval = CHECK_INTERVAL
                continue
            generation = self._generation
            target = await self._jump_target()
            # No await between this check and the clock's move (advance sets the time first).
            ahead = None if target is None else target - self._clock.now_ms()
            if ahead is None or ahead <= 0 or generation != self._generation:
                await anyio.sleep(interval)
                interval = min(interval * 1.5, MAX_CHECK_INTERVAL)
                continue
            self.jumps += 1
            interval = CHECK_INTERVAL
            await self._clock.advance(ahead / 1000)

    async def idle(self) -> bool:
        """Whether nothing can run right now (condition 2)."""
        return await self._next_due() is not None

    async def _next_due(self) -> float | None:
        """None while something can run; else when the next hidden work falls due (inf if
        nothing is due at all)."""
        before = self._runtime._work_snapshot()
        if before.busy:
            return None
        depths = await self._store.queue_depths()
        if self._runtime._work_snapshot() != before:
            return None
        if depths.orchestrator or depths.worker or depths.locked != before.parked:
            return None
        if depths.timers and depths.next_due_ms is None:
            return None  # the store cannot say when: never guess
        return math.inf if depths.next_due_ms is None else depths.next_due_ms

    async def _jump_target(self) -> int | None:
        due = await self._next_due()
        if due is None:
            return None
        limits = [w.until_ms for w in self._waiters if w.until_ms is not None]
        target = min([due, *limits])
        if target == math.inf or target <= self._clock.now_ms():
            return None
        for waiter in list(self._waiters):
            if await waiter.satisfied():
                return None
        return int(target)


async def _never() -> bool:
    return False
