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
