"""The tables behind ``InMemoryProvider``: rows, the two queues, and lookups over them.

Everything here is synchronous: the provider calls it between awaits, so each operation is
atomic with respect to every other task on the event loop.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field

from .._history import HistoryEvent
from .._messages import ActivityTask, AnyOrchestratorMessage, StartOrchestrationMessage
from .._status import ErrorInfo, State
from ._types import (
    ExecutionStatus,
    InstanceRecord,
    KvChange,
    KvEntry,
    TurnChanges,
)


@dataclass(slots=True, kw_only=True)
class OrchestratorRow:
    """One orchestrator-queue message."""

    seq: int
    instance_id: str
    message: AnyOrchestratorMessage
    visible_at_ms: int
    enqueued_at_ms: int
    lock_token: str | None = None
    """Token of the turn whose batch holds this message (only meaningful while that lock lives)."""
    delivery_count: int = 0


@dataclass(slots=True, kw_only=True)
class TurnLock:
    token: str
    locked_until_ms: int
    owner_id: str


@dataclass(slots=True, kw_only=True)
class WorkRow:
    """One worker-queue item."""

    seq: int
    task: ActivityTask
    visible_at_ms: int
    lock_token: str | None = None
    locked_until_ms: int = 0
    delivery_count: int = 0

    def is_locked(self, now_ms: int) -> bool:
        return self.lock_token is not None and self.locked_until_ms > now_ms


@dataclass(slots=True, kw_only=True)
class SessionRow:
    owner_id: str
    locked_until_ms: int
    last_activity_ms: int

    def is_live(self, now_ms: int) -> bool:
        return self.locked_until_ms > now_ms


@dataclass(slots=True, kw_only=True)
class ExecutionRow:
    status: ExecutionStatus = ExecutionStatus.RUNNING
    events: list[HistoryEvent] = field(default_factory=list)
    event_ids: set[int] = field(default_factory=set)
    started_at_ms: int = 0
    completed_at_ms: int | None = None


@dataclass(slots=True, kw_only=True)
class InstanceRow:
    """A committed instance: created by its first committed turn."""

    instance_id: str
    name: str
    version: str
    parent_instance_id: str | None
    created_at_ms: int
    created_seq: int
    """Tie-breaker for newest-first listing (the start message's queue sequence)."""
    updated_at_ms: int
    execution_id: int
    executions: dict[int, ExecutionRow] = field(default_factory=dict)
    output: bytes | None = None
    error: ErrorInfo | None = None
    completed_at_ms: int | None = None
    custom_status: bytes | None = None
    custom_status_version: int = 0
    kv: dict[str, KvEntry] = field(default_factory=dict)
    """Committed KV: the merged state of every finished execution."""
    kv_delta: dict[str, KvEntry | None] = field(default_factory=dict)
    """The current execution's writes; None is a tombstone."""
    restarting: bool = False
    """A restart is queued (``start_instance``): the record reads as PENDING, without custom
    status or KV, until the next commit."""

    @property
    def status(self) -> ExecutionStatus:
        return self.executions[self.execution_id].status

    def record(self) -> InstanceRecord:
        status = self.status
        if self.restarting:
            return InstanceRecord(
                instance_id=self.instance_id,
                state=State.PENDING,
                name=self.name,
                version=self.version,
                execution_id=self.execution_id,
                custom_status_version=self.custom_status_version,
                parent_instance_id=self.parent_instance_id,
                created_at_ms=self.created_at_ms,
                updated_at_ms=self.updated_at_ms,
            )
        return InstanceRecord(
            instance_id=self.instance_id,
            state=status.instance_state(),
            name=self.name,
            version=self.version,
            execution_id=self.execution_id,
            execution_status=status,
            output=self.output,
            error=self.error,
            custom_status=self.custom_status,
            custom_status_version=self.custom_status_version,
            parent_instance_id=self.parent_instance_id,
            created_at_ms=self.created_at_ms,
            updated_at_ms=self.updated_at_ms,
            completed_at_ms=self.completed_at_ms,
        )

    def merged_kv(self) -> dict[str, KvEntry]:
        merged = dict(self.kv)
        for key, entry in self.kv_delta.items():
            if entry is None:
                merged.pop(key, None)
            else:
                merged[key] = entry
        return merged

    def apply_kv(self, clear_all: bool, changes: Iterable[KvChange]) -> None:
        if clear_all:
            self.kv_delta = dict.fromkeys(self.kv.keys() | self.kv_delta.keys())
        for change in changes:
            self.kv_delta[change.key] = (
                None
                if change.value is None
                else KvEntry(value=change.value, updated_at_ms=change.updated_at_ms)
            )

    def merge_kv_delta(self) -> None:
        self.kv = self.merged_kv()
        self.kv_delta = {}

    def apply_changes(self, changes: TurnChanges, now_ms: int) -> None:
        """Steps 2-5 of ``commit_turns`` (record, history, custom status, KV); never fails."""
        if self.restarting and changes.execution_id > self.execution_id:
            self.kv, self.kv_delta = {}, {}  # a restart starts from no KV at all
        self.restarting = False
        self.name = changes.name
        self.version = changes.version
        if self.parent_instance_id is None:
            self.parent_instance_id = changes.parent_instance_id
        execution = self.executions.setdefault(
            changes.execution_id, ExecutionRow(started_at_ms=now_ms)
        )
        self.execution_id = changes.execution_id
        if changes.new_events:
            in_order = not execution.events or (
                changes.new_events[0].event_id > execution.events[-1].event_id
            )
            execution.events.extend(changes.new_events)
            execution.event_ids.update(event.event_id for event in changes.new_events)
            if not in_order:
                execution.events.sort(key=lambda event: event.event_id)
        status = changes.execution_status
        execution.status = status
        if status.is_terminal and execution.completed_at_ms is None:
            execution.completed_at_ms = now_ms
        elif not status.is_terminal:
            execution.completed_at_ms = None  # a rewound execution runs again
        self.output = changes.output
        self.error = changes.error
        self.updated_at_ms = now_ms
        self.completed_at_ms = now_ms if status.instance_state().is_terminal else None
        if changes.custom_status_changed:
            self.custom_status = changes.custom_status
            self.custom_status_version += 1
        self.apply_kv(changes.kv_clear_all, changes.kv_changes.values())
        if status.commits_kv:
            self.merge_kv_delta()


class OrchestratorQueue:
    """Orchestrator-queue rows in enqueue order, indexed by instance and by arrival time."""

    def __init__(self) -> None:
        self._rows: dict[int, OrchestratorRow] = {}
        self._by_instance: dict[str, dict[int, OrchestratorRow]] = {}
        # (visible_at_ms, seq, instance_id) of every row; entries of removed or rescheduled
        # rows are dropped when they surface, so a fetch does not sort the whole queue.
        self._arrivals: list[tuple[int, int, str]] = []

    def instances_in_arrival_order(self, now_ms: int) -> Generator[str, None, None]:
        """Instances with a visible row, in the order of their first visible row (as
        :func:`arrival_order` would sort every visible row). Close it when done."""
        surfaced: list[tuple[int, int, str]] = []
        seen: set[str] = set()
        try:
            while self._arrivals and self._arrivals[0][0] <= now_ms:
                entry = heapq.heappop(self._arrivals)
                row = self._rows.get(entry[1])
                if row is None or row.visible_at_ms != entry[0]:
                    continue  # removed, or rescheduled under a newer entry
                surfaced.append(entry)
                if entry[2] not in seen:
                    seen.add(entry[2])
                    yield entry[2]
        finally:
            for entry in surfaced:
                heapq.heappush(self._arrivals, entry)

    def reschedule(self, row: OrchestratorRow, visible_at_ms: int) -> None:
        if visible_at_ms != row.visible_at_ms:
            row.visible_at_ms = visible_at_ms
            heapq.heappush(self._arrivals, (visible_at_ms, row.seq, row.instance_id))

    def rows(self) -> list[OrchestratorRow]:
        """Every row, oldest first (a copy, so callers may remove rows as they go)."""
        return list(self._rows.values())

    def of(self, instance_id: str) -> list[OrchestratorRow]:
        """The rows of one instance, oldest first."""
        return list(self._by_instance.get(instance_id, {}).values())

    def instance_ids(self) -> list[str]:
        return list(self._by_instance)

    def add(self, row: OrchestratorRow) -> None:
        self._rows[row.seq] = row
        self._by_instance.setdefault(row.instance_id, {})[row.seq] = row
        heapq.heappush(self._arrivals, (row.visible_at_ms, row.seq, row.instance_id))

    def remove(self, row: OrchestratorRow) -> None:
        self._rows.pop(row.seq, None)
        rows = self._by_instance.get(row.instance_id)
        if rows is not None:
            rows.pop(row.seq, None)
            if not rows:
                del self._by_instance[row.instance_id]


class WorkQueue:
    """Worker-queue rows in enqueue order, with the live lock tokens that point at them."""

    def __init__(self) -> None:
        self._rows: dict[int, WorkRow] = {}
        self._tokens: dict[str, int] = {}

    def rows(self) -> list[WorkRow]:
        return list(self._rows.values())

    def add(self, row: WorkRow) -> None:
        self._rows[row.seq] = row

    def remove(self, row: WorkRow) -> None:
        self._rows.pop(row.seq, None)
        self.unlock(row)

    def lock(self, row: WorkRow, token: str, until_ms: int) -> None:
        self.unlock(row)
        row.lock_token = token
        row.locked_until_ms = until_ms
        row.delivery_count += 1
        self._tokens[token] = row.seq

    def unlock(self, row: WorkRow) -> None:
        if row.lock_token is not None:
            self._tokens.pop(row.lock_token, None)
        row.lock_token = None
        row.locked_until_ms = 0

    def by_token(self, token: str) -> WorkRow | None:
        seq = self._tokens.get(token)
        return None if seq is None else self._rows.get(seq)


def arrival_order(rows: Iterable[OrchestratorRow]) -> list[OrchestratorRow]:
    """Messages in the order they became visible (a timer arrives when it falls due)."""
    return sorted(rows, key=lambda row: (row.visible_at_ms, row.seq))


def to_ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(0, round(seconds * 1000))


def pending_record(row: OrchestratorRow) -> InstanceRecord:
    """The PENDING record a queued start stands for."""
    start = row.message
    if not isinstance(start, StartOrchestrationMessage):
        raise TypeError("a pending record needs a StartOrchestrationMessage row")
    return InstanceRecord(
        instance_id=row.instance_id,
        state=State.PENDING,
        name=start.name,
        version=start.version,
        parent_instance_id=start.parent.instance_id if start.parent else None,
        created_at_ms=row.enqueued_at_ms,
        updated_at_ms=row.enqueued_at_ms,
    )


class MemoryTables:
    """Everything one ``InMemoryProvider`` stores. The ``*_nowait`` functions of
    ``_memory_turns``, ``_memory_activities`` and ``_memory_manage`` read and change it."""

    def __init__(self) -> None:
        # One sequence for the rows of both queues and for instance creation: enqueue order.
        self.seq = itertools.count(1)
        # Committed instances by id; an instance exists once its first turn is committed.
        self.instances: dict[str, InstanceRow] = {}
        self.queue = OrchestratorQueue()
        # Instance id -> its turn lock, live or expired, until released or taken over.
        self.locks: dict[str, TurnLock] = {}
        # Turn lock token -> instance id, for every lock in ``locks``.
        self.lock_instances: dict[str, str] = {}
        self.work = WorkQueue()
        # Session id -> the worker that holds it, until orphaned sessions are cleaned up.
        self.sessions: dict[str, SessionRow] = {}

    def pending_start(self, instance_id: str) -> OrchestratorRow | None:
        """The queued start of an instance that has no committed turn yet."""
        if instance_id in self.instances:
            return None
        for row in self.queue.of(instance_id):
            if isinstance(row.message, StartOrchestrationMessage):
                return row
        return None

    def pending_starts(self) -> Iterable[OrchestratorRow]:
        for instance_id in self.queue.instance_ids():
            row = self.pending_start(instance_id)
            if row is not None:
                yield row

    def record(self, instance_id: str) -> InstanceRecord | None:
        """The committed record, or the PENDING one a queued start stands for."""
        instance = self.instances.get(instance_id)
        if instance is not None:
            return instance.record()
        start_row = self.pending_start(instance_id)
        return None if start_row is None else pending_record(start_row)
