"""State one ``CosmosProvider`` shares between its parts (store, clock, signals, lock cache)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import anyio

from duro._clock import Clock
from duro.providers._signal import WorkSignal

from ._documents import InstanceDoc, KvDoc
from ._store import Store

POLL_INTERVAL_S = 1.0
"""How often a waiting fetch re-queries for work written by other processes."""


async def wait_for_work(clock: Clock, event: anyio.Event, queried_at: int, deadline: int) -> None:
    """Wait, after an empty query made at ``queried_at`` (clock ms), before querying again.

    Returns when ``event`` fires, when :data:`POLL_INTERVAL_S` has passed *since the query*,
    or at ``deadline``. Measuring from the query, not from now, matters: the query is a network
    round trip, and if the clock moved meanwhile (a lock or timer fell due while the query ran
    with the older time) the wait ends at once, so the fetch re-queries with the new time
    instead of sleeping through what is now due (with a virtual clock, sleeping forever).
    """
    wake_at = min(queried_at + round(POLL_INTERVAL_S * 1000), deadline)
    remaining_ms = wake_at - clock.now_ms()
    if remaining_ms > 0:
        await WorkSignal.wait(clock, event, remaining_ms / 1000)


@dataclass(slots=True, kw_only=True)
class TurnLock:
    """What this process knows about a turn lock it took (saves a read per commit)."""

    instance_id: str
    token: str
    etag: str
    until: int
    instance: InstanceDoc
    kv: dict[str, KvDoc]


@dataclass(slots=True, kw_only=True)
class WorkLock:
    instance_id: str
    doc_id: str
    token: str
    etag: str
    until: int
    session: str | None


@dataclass(slots=True, kw_only=True)
class Context:
    store: Store
    clock: Clock
    owner_id: str = field(default_factory=lambda: "runtime-" + uuid.uuid4().hex[:12])
    turn_signal: WorkSignal = field(default_factory=WorkSignal)
    activity_signal: WorkSignal = field(default_factory=WorkSignal)
    turn_locks: dict[str, TurnLock] = field(default_factory=dict)
    work_locks: dict[str, WorkLock] = field(default_factory=dict)
    claiming: set[str] = field(default_factory=set)
    """Instances / work items a task of this process is locking right now: others skip them."""
