"""Dispatch slots: which instances this runtime's turn fetches look at.

Every queue document carries ``slot = crc32(instanceId) % 256``. Each runtime (one provider
object) holds a membership lease, a ``lease`` document in partition ``~slots`` that it renews
every ``lease_ms / 3``. Slots are dealt out by rendezvous hashing over the live members, so
every runtime computes the same assignment from the same member list: when one joins, about
1/n of the slots move to it; when one stops renewing, its lease expires and its slots are
taken over by the survivors at their next refresh. During a hand-over two runtimes may both
look at a slot for a moment: harmless, since the instance lock (an etag-guarded replace) keeps
turns exclusive. Slots only keep runtimes from contending for the same messages.
"""

from __future__ import annotations

import hashlib

from ._context import Context
from ._documents import SLOT_COUNT, SLOTS_PARTITION, LeaseDoc, dump, load
from ._rest import CosmosPreconditionFailed

DEFAULT_LEASE_MS = 30_000


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


class Slots:
    def __init__(self, ctx: Context, *, lease_ms: int = DEFAULT_LEASE_MS) -> None:
        self._ctx = ctx
        self._lease_ms = lease_ms
        self._refresh_at = 0
        self._owned: frozenset[int] | None = None
        self.members: list[str] = []

    async def owned(self, now: int) -> frozenset[int] | None:
        """This runtime's slots; ``None`` means all of them (it is the only live member)."""
        if now >= self._refresh_at:
            await self.refresh(now)
        return self._owned

    async def refresh(self, now: int) -> None:
        ctx = self._ctx
        me = ctx.owner_id
        lease = LeaseDoc(
            id=f"member:{me}", instance_id=SLOTS_PARTITION, owner_id=me,
            expires_at=now + self._lease_ms,
        )  # fmt: skip
        await ctx.store.open()
        await ctx.store.client.upsert_document(ctx.store.link, dump(lease), SLOTS_PARTITION)
        rows = await ctx.store.query_partition(
            SLOTS_PARTITION,
            "SELECT * FROM c WHERE c.instanceId = @pk AND c.type = 'lease'",
        )
        live: list[str] = []
        for raw in rows:
            doc = load(raw, LeaseDoc)
            if doc.expires_at > now or doc.owner_id == me:
                live.append(doc.owner_id)
            else:
                try:
                    await ctx.store.delete(doc.id, SLOTS_PARTITION, if_match=doc.etag)
                except CosmosPreconditionFailed:
                    pass  # the member came back meanwhile
        self.members = sorted(set(live))
        self._owned = None if self.members == [me] else assign(self.members, me)
        self._refresh_at = now + self._lease_ms // 3

    async def leave(self) -> None:
        """Give the slots up at once (on close) instead of letting the lease run out."""
        if self._refresh_at == 0:
            return
        self._refresh_at = 0
        await self._ctx.store.delete(f"member:{self._ctx.owner_id}", SLOTS_PARTITION)
