"""What a fetch consults before it takes work: membership, the work it knows of, and sweeps.

One :class:`Dispatch` per provider. Fetches call :meth:`Dispatch.keep_up` (heartbeat, read the
membership, sweep when due), take from :attr:`Dispatch.known`, and wait with
:meth:`Dispatch.wait` when there is nothing: until a write in this process signals, something
known falls due, or the next heartbeat or sweep. Writers report what they wrote with
:meth:`Dispatch.wrote_message` and :meth:`Dispatch.wrote_item`: into the index when this
member dispatches that slot, else as a doorbell for the member that does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from duro._clock import Clock
from duro._errors import ProviderError
from duro.providers._signal import WorkSignal

from ._context import Context
from ._documents import slot_of
from ._known_work import KnownWork, WorkRef
from ._membership import Membership
from ._sweep import Sweeper


class Dispatch:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.membership = Membership(ctx)
        self.known = KnownWork()
        self.sweeper = Sweeper(ctx, self.membership, self.known)
        self._runtimes = 0
        self._keeping_up: anyio.Lock | None = None
        self.protectors: list[Callable[[frozenset[int]], Awaitable[None]]] = []
        """Called with slots this member gave up: each writes the locks it holds there in
        process only, before the new owner's hand-over grace ends."""

    # -- membership follows the runtimes that use this provider ----------------------------------

    async def runtime_started(self) -> None:
        self._runtimes += 1
        await self.membership.join()

    async def runtime_stopped(self) -> None:
        self._runtimes = max(0, self._runtimes - 1)
        if self._runtimes == 0:
            await self.membership.leave()

    # -- fetching --------------------------------------------------------------------------------

    async def keep_up(self) -> None:
        """Join on first use, heartbeat, read the membership and sweep, each when due."""
        await self.maintain(join=True, sweep=True)

    async def maintain(self, *, join: bool = False, sweep: bool = False) -> None:
        """Heartbeat and read the membership when due (``join``: first join if needed;
        ``sweep``: sweep too when due). One at a time: a fetch that arrives while another
        sweeps waits for what that sweep finds instead of missing it."""
        if self._keeping_up is None:
            self._keeping_up = anyio.Lock()
        async with self._keeping_up:
            if join and not self.membership.joined:
                await self.membership.join()
            await self.membership.tick()
            if self.membership.lost:
                lost, self.membership.lost = frozenset(self.membership.lost), set()
                for protect in self.protectors:
                    try:
                        await protect(lost)
                    except ProviderError:
                        pass  # that lock is lost: the commit's If-Match voids the work
            if sweep:
                await self.sweeper.sweep_if_due()

    async def wait(self, clock: Clock, event: anyio.Event, now: int, deadline: int) -> None:
        """Wait after finding nothing: for a signal, known work falling due, or the deadline;
        in real time at most until the next heartbeat, membership read or sweep is due."""
        until = deadline
        due = self.known.next_due(now)
        if due is not None:
            until = min(until, due)
        real = min(self.membership.next_tick_in(), self.sweeper.due_in())
        remaining_ms = until - clock.now_ms()
        if remaining_ms <= 0 or real <= 0:
            return
        with anyio.move_on_after(real):
            await WorkSignal.wait(clock, event, remaining_ms / 1000)

    def owns(self, slot: int) -> bool:
        return self.membership.owns(slot)

    def mine(self, instance_id: str) -> bool:
        """Whether this member dispatches ``instance_id``'s turns."""
        return self.membership.owns(slot_of(instance_id))

    @staticmethod
    def anyones(ref: WorkRef) -> bool:
        """Whether any member whose runtime accepts it may run the item (tags, sessions)."""
        return ref.tag is not None or ref.session is not None

    # -- writing ---------------------------------------------------------------------------------

    async def wrote_message(self, instance_id: str, visible_at: int) -> None:
        """A queue message for ``instance_id`` now exists, visible from ``visible_at``."""
        slot = slot_of(instance_id)
        if self.membership.owns(slot):
            self.known.note_turn(instance_id, visible_at)
            self._ctx.turn_signal.notify()
        else:
            await self.membership.ring(slot)

    async def wrote_item(self, ref: WorkRef) -> None:
        """A work item now exists. Any member whose runtime accepts its tag may run a tagged
        or session item, so those ring the doorbell even when this member owns the slot."""
        if self.membership.owns(ref.slot):
            self.known.note_item(ref)
            self._ctx.activity_signal.notify()
        await self.membership.ring(ref.slot, even_if_mine=self.anyones(ref))


__all__ = ["Dispatch"]
