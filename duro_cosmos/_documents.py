"""The documents ``CosmosProvider`` keeps in its one container (partition key ``/instanceId``).

Every document carries ``type``. Everything of one instance lives in that instance's logical
partition, so a turn commits in one transactional batch:

=================  ==========================================================================
``instance``       id ``instance``: metadata, executions, the turn lock (token, owner, expiry,
                   the ids of the locked batch) and per-message delivery counts
``history``        id ``h:{execution}:{first event id}``: the events one commit appended
``orch_queue``     id ``m:...``: one orchestrator message; ``visibleAt`` hides timers
``worker_queue``   id ``w:...``: one activity work item with its own lock
``outbox_intent``  id ``o:{commit id}``: messages a commit sends to other partitions
``session``        id ``session`` in partition ``~s:{hash}``: session owner and lease
``kv``             id ``kv:{bucket}``: committed value and current-execution delta of the keys
                   that hash to the bucket
=================  ==========================================================================

Plus ``member`` and ``bell`` documents in partition ``~slots`` (who dispatches which slots,
and doorbells for work written from elsewhere; see ``_membership``).
Payloads (messages, tasks, events, outputs, KV values) are stored as JSON *text*, byte for
byte what duro encoded. Times are milliseconds of the provider's clock, never the server's.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
import zlib
from typing import Any, TypeVar

import msgspec

SLOT_COUNT = 256
SLOTS_PARTITION = "~slots"
INSTANCE_DOC_ID = "instance"
KV_BUCKETS = 8

T = TypeVar("T", bound=msgspec.Struct)


class _Doc(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=False):
    id: str
    instance_id: str
    etag: str | None = msgspec.field(default=None, name="_etag")


class LockState(msgspec.Struct, kw_only=True, rename="camel"):
    token: str
    owner: str = ""
    until: int = 0
    batch: list[str] = []


class ExecutionInfo(msgspec.Struct, kw_only=True, rename="camel"):
    execution_id: int
    status: str = "running"
    started_at: int = 0
    completed_at: int | None = None
    event_ranges: list[list[int]] = []
    """Stored event ids as closed ``[lo, hi]`` ranges (normally one): the duplicate check."""
    event_count: int = 0


class InstanceDoc(_Doc, kw_only=True):
    type: str = "instance"
    state: str = "pending"
    """``pending`` (only a start is queued) or ``active`` (a turn has committed)."""
    status: str = "pending"
    """The instance's ``State`` value, kept for listings to filter on in the query."""
    name: str = ""
    version: str | None = None
    parent_instance_id: str | None = None
    created_at: int = 0
    created_seq: int = 0
    updated_at: int = 0
    completed_at: int | None = None
    execution_id: int = 0
    executions: list[ExecutionInfo] = []
    output: str | None = None
    error: str | None = None
    custom_status: str | None = None
    custom_status_version: int = 0
    lock: LockState | None = None
    delivery_counts: dict[str, int] = msgspec.field(default_factory=dict, name="attempts")
    last_commit_id: str | None = None
    restarting: bool = False
    """A restart is queued (``start_instance``): reads as PENDING until the next commit."""
    slot: int = 0
    ttl: int | None = None
    """Seconds until Cosmos deletes the document (set when a finished instance's retention
    starts, see ``CosmosProvider(retention=...)``); absent otherwise."""

    def execution(self, execution_id: int) -> ExecutionInfo | None:
        for info in self.executions:
            if info.execution_id == execution_id:
                return info
        return None


class HistoryDoc(_Doc, kw_only=True):
    type: str = "history"
    execution_id: int
    first_event_id: int
    count: int
    events: str
    """JSON array of the events, as duro encoded them."""


class QueueDoc(_Doc, kw_only=True):
    type: str = "orch_queue"
    slot: int = 0
    visible_at: int
    seq: int
    enqueued_at: int
    kind: str
    msg: str


class WorkDoc(_Doc, kw_only=True):
    type: str = "worker_queue"
    slot: int = 0
    """The instance's dispatch slot: its owner runs the item unless a tag or session says
    otherwise."""
    execution_id: int
    seq_no: int
    visible_at: int
    seq: int
    lock_token: str | None = None
    locked_until: int = 0
    lock_owner: str | None = None
    """The member that wrote the lock: a lock of a member that is gone is void."""
    delivery_count: int = msgspec.field(default=0, name="attempt")
    tag: str | None = None
    session: str | None = None
    task: str


class OutboxItem(msgspec.Struct, kw_only=True, rename="camel"):
    target: str
    doc_id: str
    kind: str
    """``message`` (orchestrator message), ``work`` (activity), ``withdraw`` (delete work) or
    ``expire`` (start the retention of every document of partition ``target``: ``body`` is
    the time to live in seconds)."""
    body: str = ""
    visible_at: int = 0
    seq: int = 0


class OutboxDoc(_Doc, kw_only=True):
    type: str = "outbox_intent"
    slot: int = 0
    created_at: int
    visible_at: int = 0
    """When a sweep may pick it up as left behind (its committer delivers it before)."""
    items: list[OutboxItem]


class SessionDoc(_Doc, kw_only=True):
    type: str = "session"
    session_id: str
    owner_id: str
    locked_until: int
    last_activity: int


class KvSlot(msgspec.Struct, kw_only=True, omit_defaults=True):
    cv: str | None = None
    """Committed value (JSON text), None if the key is not committed."""
    ct: int = 0
    d: bool = False
    """The current execution has a delta for this key (``dv`` None = tombstone)."""
    dv: str | None = None
    dt: int = 0


class KvDoc(_Doc, kw_only=True):
    type: str = "kv"
    entries: dict[str, KvSlot] = {}


class MemberDoc(_Doc, kw_only=True):
    type: str = "member"
    owner_id: str
    beat_at: int
    """The member's clock at its last heartbeat (for people; liveness uses etag changes)."""


class BellDoc(_Doc, kw_only=True):
    type: str = "bell"
    rung_at: int


# -- conversion ---------------------------------------------------------------------------------


def load(raw: Any, cls: type[T]) -> T:
    """A document dict from Cosmos as ``cls`` (unknown fields, like ``_rid``, are ignored)."""
    return msgspec.convert(raw, cls, strict=False)


def dump(doc: msgspec.Struct) -> dict[str, Any]:
    """The body to write: every field but the etag (and ``ttl`` unless set: Cosmos refuses
    a null one)."""
    out: dict[str, Any] = msgspec.to_builtins(doc)
    out.pop("_etag", None)
    if out.get("ttl", 0) is None:
        del out["ttl"]
    return out


# -- keys and ids -------------------------------------------------------------------------------


def slot_of(instance_id: str) -> int:
    """Dispatch slot of an instance: a stable hash (CRC-32), not Python's salted ``hash``."""
    return zlib.crc32(instance_id.encode()) % SLOT_COUNT


def kv_bucket(key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return f"kv:{digest[0] % KV_BUCKETS}"


def session_partition(session_id: str) -> str:
    return "~s:" + hashlib.sha256(session_id.encode()).hexdigest()[:40]


def history_doc_id(execution_id: int, first_event_id: int) -> str:
    return f"h:{execution_id:06d}:{first_event_id:08d}"


def new_id() -> str:
    return uuid.uuid4().hex


class _Sequence:
    """Enqueue order: strictly increasing in this process, roughly time-ordered across them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            value = max(self._last + 1, time.time_ns() // 1000)
            self._last = value
            return value


SEQUENCE = _Sequence()

_TOKEN_SEP = "~"


def make_token(instance_id: str, *rest: str) -> str:
    """A lock token naming its partition: ``nonce~instance[~doc]`` (``~`` is not allowed in
    instance ids, so the token parses back unambiguously)."""
    return _TOKEN_SEP.join((uuid.uuid4().hex + os.urandom(2).hex(), instance_id, *rest))


def parse_token(token: str, parts: int) -> list[str] | None:
    pieces = token.split(_TOKEN_SEP)
    if len(pieces) != parts or not all(pieces):
        return None
    return pieces
