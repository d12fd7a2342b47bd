"""State one ``CosmosProvider`` shares between its parts (store, clock, signals, lock cache)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from duro._clock import Clock
from duro.providers._signal import WorkSignal

from ._documents import InstanceDoc, KvDoc
from ._store import Store


@dataclass(slots=True, kw_only=True)
class TurnLock:
    """A turn lock this process holds (saves a read per commit).

    ``written`` says whether the lock is in the instance document too. Fresh work of a slot
    this member owns is locked here only: no other member takes it, and the commit's If-Match
    on ``etag`` still refuses a turn that someone else overtook."""

    instance_id: str
    token: str
    etag: str
    until: int
    instance: InstanceDoc
    kv: dict[str, KvDoc]
    batch: list[str]
    """Ids of the queue messages in the locked batch."""
    written: bool
    later_timers: list[str] = field(default_factory=list)
    """Ids of this instance's timers not yet due at the fetch: an ending turn removes them."""
    offered: bool = False
    """Expired and offered to the next fetch. Until one takes the instance over, the lock
    still commits (the token is the fence; expiry only allows a take-over)."""


@dataclass(slots=True, kw_only=True)
class WorkLock:
    """A work item lock this process holds; ``written`` as for :class:`TurnLock`."""

    instance_id: str
    doc_id: str
    token: str
    etag: str
    until: int
    session: str | None
    written: bool = True
    offered: bool = False
    """As for :class:`TurnLock`."""
    slot: int = 0
    visible_at: int = 0
    seq: int = 0
    tag: str | None = None


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
    retention_s: int | None = None
    """Seconds a finished instance's documents are kept before Cosmos deletes them (TTL);
    None keeps them until they are deleted."""
    delivered: dict[str, int] = field(default_factory=dict)
    """Deliveries this process made of queue messages and work items without writing them
    (see ``TurnLock.written``), by document id: a later delivery counts them."""
