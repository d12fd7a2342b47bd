"""Which runtime dispatches which instances: members, heartbeats, dispatch slots and doorbells.

Every instance (and each of its queue documents) has a dispatch *slot*, ``crc32(id) % 256``.
A provider that dispatches work (a runtime's, or one a test fetches from directly) is a
*member*: it keeps a ``member`` document in partition ``~slots`` and rewrites it every
:data:`HEARTBEAT_S`. Every member reads that partition every :data:`READ_S` and deals the
slots out among the live members by rendezvous hashing, so all compute the same assignment
and a joining member takes about 1/n of the slots. A member is live while its document keeps
changing: liveness is judged by the *reader's* monotonic clock seeing the etag change, never
by comparing timestamps written by another machine, so clock skew between hosts cannot make a
member look dead or alive. A member whose document has not changed for :data:`MEMBER_TTL_S`
is gone (SIGKILL, a hung host) and its slots move to the survivors; one that stops cleanly
(:meth:`Membership.leave`, when its runtime exits) deletes its document and its slots move at
the others' next read.

Work written by a process that does not own the slot it lands in (a client's start or event,
another runtime's result for a child) *rings a doorbell*: an upsert of one of
:data:`BELLS` small documents in ``~slots``. Members see the bell's etag change at their next
read and sweep for new work, so nobody polls the whole container to notice it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ._context import Context
from ._documents import SLOT_COUNT, SLOTS_PARTITION, BellDoc, MemberDoc, dump
from ._rest import CosmosError, CosmosPreconditionFailed

HEARTBEAT_S = 1.0
"""How often a member rewrites its document."""
MEMBER_TTL_S = 3.0
"""A member whose document has not changed for this long (by the reader's clock) is gone."""
READ_S = 1.0
"""How often a member reads the membership partition (members and doorbells)."""
HANDOVER_GRACE_S = 2.5
"""When a slot moves between two live members (one joined or left), how long the new owner
waits before taking its work: the old one sees the new assignment at its next read (within
:data:`READ_S`) and writes the locks of the work it is still running there, which it held in
process only."""
BELLS = 16
"""Doorbell documents; slot ``s`` rings bell ``s % BELLS``."""
MAX_CLOCK_SKEW_MS = 10_000
"""How far apart the clocks of two members may be. A lock written by a live member holds
until its expiry *plus* this much by a reader's clock, so a reader whose clock runs ahead
never takes work a live member is still running (it renews its locks long before that)."""


def assign(members: list[str], me: str) -> frozenset[int]:
    """The slots rendezvous hashing gives ``me`` among ``members``."""
    mine: set[int] = set()
    for slot in range(SLOT_COUNT):
        best = max(
            members, key=lambda m: hashlib.blake2b(f"{m}/{slot}".encode(), digest_size=8).digest()
        )
        if best == me:
            mine.add(slot)
    return frozenset(mine)


@dataclass(slots=True)
class _Seen:
    etag: str | None
    changed_at: float
    """Monotonic time this reader last saw the document change."""


class Membership:
    """This provider's membership, and the slot assignment as of its last read."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.joined = False
        self.members: list[str] = []
        self._owned: frozenset[int] = frozenset()
        self._owned_since: dict[int, int] = {}
        """Slot -> provider-clock ms from which this member has owned it: work visible
        since then was never offered to anyone else."""
        self._active_at: dict[int, float] = {}
        """Slot -> monotonic time from which this member takes its work (a hand-over grace)."""
        self.lost: set[int] = set()
        """Slots given up since the caller last looked: it writes the locks it holds there."""
        self._seen: dict[str, _Seen] = {}
        self._gone: set[str] = set()
        """Members this one saw stop (their locks are void)."""
        self._bells: dict[str, str | None] = {}
        self._next_beat = 0.0
        self._next_read = 0.0
        self._etag: str | None = None
        self.rang = False
        """A doorbell rang (or the assignment gave this member new slots) since the last
        sweep: work written elsewhere may be waiting."""

    # -- what this member owns -------------------------------------------------------------------

    def owns(self, slot: int) -> bool:
        """Whether this member dispatches ``slot`` now (owned, and past any hand-over grace)."""
        if not self.joined or slot not in self._owned:
            return False
        active_at = self._active_at.get(slot)
        return active_at is None or time.monotonic() >= active_at

    def owned(self) -> frozenset[int]:
        return self._owned if self.joined else frozenset()

    def alone(self) -> bool:
        return self.joined and len(self._owned) == SLOT_COUNT

    def fresh(self, slot: int, visible_at: int) -> bool:
        """Whether work in ``slot`` that became visible at ``visible_at`` can only ever have
        been offered to this member (so taking it needs no lock write)."""
        since = self._owned_since.get(slot)
        return self.joined and since is not None and visible_at >= since

    def is_live(self, owner_id: str | None) -> bool:
        """Whether ``owner_id`` is a member this one believes to be running."""
        if owner_id is None:
            return False
        if owner_id == self._ctx.owner_id:
            return self.joined
        seen = self._seen.get(owner_id)
        return seen is not None and time.monotonic() - seen.changed_at < MEMBER_TTL_S

    def lock_holds(
        self, owner_id: str | None, until: int, now: int, *, taken_here: bool = True
    ) -> bool:
        """Whether a lock that ``owner_id`` wrote, expiring at ``until`` by its clock, still
        holds by this member's clock ``now``. A live member's lock gets
        :data:`MAX_CLOCK_SKEW_MS` of grace, a gone member's lock is void at once, anything
        else is judged by its expiry.

        A lock under this member's own id that this process did not take (``taken_here``
        False) is void at once too: an owner id names one live process, so it was written by
        an earlier run under the same id that ended without giving it back (a crash; a
        restarted worker keeps its id). Its token still fences that run's writes."""
        if owner_id is not None and owner_id == self._ctx.owner_id and not taken_here:
            return False
        if owner_id is not None and owner_id != self._ctx.owner_id:
            if self.is_live(owner_id):
                return until + MAX_CLOCK_SKEW_MS > now
            if owner_id in self._gone:
                return False
        return until > now

    # -- joining, leaving, keeping up ------------------------------------------------------------

    async def join(self) -> None:
        if self.joined:
            return
        self.joined = True
        self._next_beat = self._next_read = 0.0
        await self.tick()

    async def leave(self) -> None:
        """Give the slots up at once (the runtime stopped) instead of letting them lapse."""
        if not self.joined:
            return
        self.joined = False
        self.lost |= self._owned
        self._owned, self._owned_since, self.members = frozenset(), {}, []
        self._active_at = {}
        store = self._ctx.store
        await store.delete(self._member_id(self._ctx.owner_id), SLOTS_PARTITION)

    async def tick(self) -> None:
        """Heartbeat and re-read the membership when due (cheap to call often)."""
        if not self.joined:
            return
        mono = time.monotonic()
        self._end_graces(mono)
        if mono >= self._next_beat:
            self._next_beat = mono + HEARTBEAT_S
            await self._beat()
        if mono >= self._next_read:
            self._next_read = mono + READ_S
            await self._read()

    def next_tick_in(self) -> float:
        """Seconds until :meth:`tick` has something to do or a slot's grace ends (a waiting
        fetch wakes for either)."""
        if not self.joined:
            return float("inf")
        mono = time.monotonic()
        times = [self._next_beat, self._next_read]
        times.extend(at for at in self._active_at.values() if at > mono)
        return max(0.0, min(times) - mono)

    async def ring(self, slot: int, *, even_if_mine: bool = False) -> None:
        """Tell whoever owns ``slot`` (or, ``even_if_mine``, any member) that work was
        written there. A member's own writes to its own slots need no bell: its fetches
        already know of them."""
        if self.owns(slot) and not even_if_mine:
            return
        now = self._ctx.clock.now_ms()
        bell = BellDoc(id=f"bell:{slot % BELLS}", instance_id=SLOTS_PARTITION, rung_at=now)
        store = self._ctx.store
        try:
            await store.upsert(dump(bell), SLOTS_PARTITION)
        except CosmosError:
            pass  # the owner's periodic sweep finds the work anyway, only later

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _member_id(owner_id: str) -> str:
        return f"member:{owner_id}"

    async def _beat(self) -> None:
        ctx = self._ctx
        doc = MemberDoc(
            id=self._member_id(ctx.owner_id), instance_id=SLOTS_PARTITION,
            owner_id=ctx.owner_id, beat_at=ctx.clock.now_ms(),
        )  # fmt: skip
        self._etag = await ctx.store.upsert(dump(doc), SLOTS_PARTITION)

    async def _read(self) -> None:
        ctx = self._ctx
        me = ctx.owner_id
        mono = time.monotonic()
        rows = await ctx.store.query_partition(
            SLOTS_PARTITION,
            "SELECT c.id, c.type, c.ownerId, c._etag FROM c WHERE c.instanceId = @pk "
            "AND (c.type = 'member' OR c.type = 'bell')",
        )
        live = {me}
        present: set[str] = set()
        for row in rows:
            etag = row.get("_etag")
            if row.get("type") == "bell":
                if self._bells.get(row["id"], "") != etag:
                    self._bells[row["id"]] = etag
                    self.rang = True
                continue
            owner = row.get("ownerId")
            if not isinstance(owner, str) or owner == me:
                continue
            present.add(owner)
            seen = self._seen.get(owner)
            if seen is None or seen.etag != etag:
                self._seen[owner] = _Seen(etag=etag, changed_at=mono)
            elif mono - seen.changed_at >= MEMBER_TTL_S:
                await self._clear_gone(owner, etag)
                continue
            live.add(owner)
        for owner in list(self._seen):
            if owner not in present:
                del self._seen[owner]
                self._gone.add(owner)  # it left
        self._reassign(sorted(live))

    def _end_graces(self, mono: float) -> None:
        """Slots whose hand-over grace is over are this member's to run now: sweep them
        again. What a sweep found there during the grace was not taken (the slot was not yet
        this member's) and may be stale (the previous owner has since written the locks it
        held); without this, that work waits for a doorbell or the next idle sweep."""
        ended = [slot for slot, at in self._active_at.items() if at <= mono]
        for slot in ended:
            del self._active_at[slot]
        if ended:
            self.rang = True

    async def _clear_gone(self, owner: str, etag: str | None) -> None:
        """Delete a gone member's document (If-Match: it may come back meanwhile)."""
        try:
            await self._ctx.store.delete(self._member_id(owner), SLOTS_PARTITION, if_match=etag)
        except CosmosPreconditionFailed:
            return
        self._seen.pop(owner, None)
        self._gone.add(owner)

    def _reassign(self, members: list[str]) -> None:
        if members == self.members:
            return
        previous, self.members = self.members, members
        me = self._ctx.owner_id
        owned = assign(members, me)
        now = self._ctx.clock.now_ms()
        mono = time.monotonic()
        gained = owned - self._owned
        self.lost |= self._owned - owned
        self._owned_since = {
            slot: self._owned_since.get(slot, now) if slot not in gained else now for slot in owned
        }
        # Who ran these slots before: the previous view, or for a member that just joined,
        # everyone else now live.
        others_before = [m for m in (previous if self._owned else members) if m != me]
        if gained and others_before:
            # A slot whose previous owner is still live is handed over after a grace.
            before = {
                slot: owner for owner in others_before for slot in assign(others_before, owner)
            }
            for slot in gained:
                if before.get(slot) in members:
                    self._active_at[slot] = mono + HANDOVER_GRACE_S
        self._active_at = {
            slot: at for slot, at in self._active_at.items() if slot in owned and at > mono
        }
        self._owned = owned
        if gained:
            self.rang = True  # new slots: look for what their previous owner left


__all__ = ["BELLS", "HEARTBEAT_S", "MEMBER_TTL_S", "READ_S", "Membership", "assign"]
