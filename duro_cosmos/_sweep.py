"""Sweeps: the bounded queries that find work other processes wrote into this member's slots.

A sweep runs one query per physical partition (partition key range), each ``TOP``
:data:`SWEEP_PAGE` ``ORDER BY visibleAt`` and projecting only ids, times and etags: the
gateway serves ORDER BY and TOP when a query is addressed to one range, so the response is a
page of the oldest work, never the backlog, and costs each range once, like one
cross-partition query would. It covers queue messages, work items and outbox intents left
behind by a crashed committer, of this member's slots, that are visible now or within
:data:`HORIZON_MS` (so a timer is known before it is due and fires on time without another
query), plus work items any member may run (tagged, or pinned to a session) that this
member's runtime accepts.

When sweeps run: when the provider joins or gains slots, when a slot's hand-over grace ends,
when a doorbell rang, when the last sweep filled a page (more work is waiting), and otherwise
every :data:`IDLE_SWEEP_S` while idle. At least :data:`MIN_GAP_S` apart, so a burst of
doorbells costs one sweep.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from duro.providers._types import TagFilter

from ._context import Context
from ._known_work import KnownWork, WorkRef
from ._membership import Membership

SWEEP_PAGE = 100
"""Documents one range returns per sweep at most."""
HORIZON_MS = 20_000
"""How far ahead a sweep looks for timers and delayed work (more than :data:`IDLE_SWEEP_S`,
so a timer written elsewhere is known before it falls due)."""
IDLE_SWEEP_S = 15.0
MIN_GAP_S = 0.25

_FIELDS = (
    "c.id, c.instanceId, c.type, c.visibleAt, c.seq, c.slot, c.tag, c.session, "
    "c.lockedUntil, c.lockOwner, c._etag"
)


class Sweeper:
    """Runs sweeps for one provider and files what they find in its :class:`KnownWork`."""

    def __init__(self, ctx: Context, membership: Membership, known: KnownWork) -> None:
        self._ctx = ctx
        self._membership = membership
        self._known = known
        self._next_idle_sweep = 0.0
        self._last_sweep = -MIN_GAP_S
        self._more = False
        self.tag_filter = TagFilter()
        """The tags this provider's activity fetches accept (the latest request's)."""
        self.sessions = False
        """Whether its activity fetches take items pinned to a session."""

    def due_in(self) -> float:
        """Seconds until a sweep is due (0: now)."""
        mono = time.monotonic()
        if self._membership.rang or self._more:
            return max(0.0, self._last_sweep + MIN_GAP_S - mono)
        return max(0.0, self._next_idle_sweep - mono)

    async def sweep_if_due(self) -> bool:
        """Sweep when one is due; returns whether it ran."""
        if not self._membership.joined or self.due_in() > 0:
            return False
        await self.sweep()
        return True

    async def sweep(self) -> None:
        membership = self._membership
        mono = time.monotonic()
        membership.rang = False
        self._last_sweep = mono
        self._next_idle_sweep = mono + IDLE_SWEEP_S
        now = self._ctx.clock.now_ms()
        sql, params = self._query(now)
        pages = await self._ctx.store.query_each_range(sql, params)
        self._more = any(len(page) >= SWEEP_PAGE for page in pages)
        held = {lock.doc_id for lock in self._ctx.work_locks.values()}
        for page in pages:
            for row in page:
                self._file(row, now, held)

    def _query(self, now: int) -> tuple[str, Mapping[str, Any]]:
        params: dict[str, Any] = {"horizon": now + HORIZON_MS}
        if self._membership.alone():
            scope = ""  # every slot is ours
        else:
            params["slots"] = sorted(self._membership.owned())
            scope = "ARRAY_CONTAINS(@slots, c.slot)"
        anyone: list[str] = []
        tags = self.tag_filter
        if tags.any_tag:
            anyone.append("c.tag != null")
        elif tags.tags:
            params["tags"] = sorted(tags.tags)
            anyone.append("ARRAY_CONTAINS(@tags, c.tag)")
        if self.sessions:
            anyone.append("c.session != null")
        if scope and anyone:
            scope = f"{scope} OR (c.type = 'worker_queue' AND ({' OR '.join(anyone)}))"
        sql = (
            f"SELECT TOP {SWEEP_PAGE} {_FIELDS} FROM c "
            "WHERE (c.type = 'orch_queue' OR c.type = 'worker_queue' OR c.type = 'outbox_intent') "
            "AND c.visibleAt <= @horizon"
            + (f" AND ({scope})" if scope else "")
            + " ORDER BY c.visibleAt"
        )
        return sql, params

    def _file(self, row: Mapping[str, Any], now: int, held: set[str]) -> None:
        """Note what a sweep found; ``held``: work items this process holds locks on."""
        instance_id = row.get("instanceId")
        if not isinstance(instance_id, str):
            return
        visible_at = int(row.get("visibleAt") or 0)
        if row.get("type") in ("orch_queue", "outbox_intent"):
            # An intent left behind is delivered by the next turn fetch of its instance.
            self._known.note_turn(instance_id, visible_at)
            return
        owner = row.get("lockOwner")
        locked_until = int(row.get("lockedUntil") or 0)
        if locked_until and self._membership.lock_holds(
            owner if isinstance(owner, str) else None,
            locked_until,
            now,
            taken_here=row["id"] in held,
        ):
            return  # its owner runs it
        self._known.note_item(
            WorkRef(
                doc_id=str(row["id"]), instance_id=instance_id, visible_at=visible_at,
                seq=int(row.get("seq") or 0), slot=int(row.get("slot") or 0),
                tag=row.get("tag"), session=row.get("session"), etag=row.get("_etag"),
                locked_until=locked_until, lock_owner=owner if isinstance(owner, str) else None,
            )
        )  # fmt: skip


__all__ = ["HORIZON_MS", "IDLE_SWEEP_S", "SWEEP_PAGE", "Sweeper"]
