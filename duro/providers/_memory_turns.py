"""The orchestrator side of ``InMemoryProvider``: messages, turn locks, committing turns.

One ``*_nowait`` function per contract operation (the async shell in ``_memory`` adds the
checkpoint, the wake-ups and long polling), like the ``*_txn`` functions of the SQLite store.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from .._errors import (
    DuplicateEventError,
    InstanceAlreadyExistsError,
    LockLostError,
    ProviderError,
)
from .._messages import (
    AnyOrchestratorMessage,
    CancelOrchestrationMessage,
    EnqueueEventMessage,
    StartOrchestrationMessage,
    TimerFiredMessage,
)
from ._memory_state import (
    InstanceRow,
    MemoryTables,
    OrchestratorRow,
    TurnLock,
    WorkRow,
    arrival_order,
    to_ms,
)
from ._types import (
    AbandonRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    RenewRequest,
    StartOutcome,
    StartRequest,
    TurnChanges,
    TurnCommit,
)

_ORPHAN_DROPPABLE = (EnqueueEventMessage, CancelOrchestrationMessage)


def enqueue_nowait(
    tables: MemoryTables, message: AnyOrchestratorMessage, visible_at_ms: int | None, now: int
) -> None:
    row = OrchestratorRow(
        seq=next(tables.seq),
        instance_id=message.instance_id,
        message=message,
        visible_at_ms=now if visible_at_ms is None else visible_at_ms,
        enqueued_at_ms=now,
    )
    tables.queue.add(row)


def start_instance_nowait(tables: MemoryTables, request: StartRequest, now: int) -> StartOutcome:
    """``start_instance``: check, then enqueue the start (unless the instance exists and is
    kept) and the messages, between two awaits."""
    start = request.start
    instance_id = start.instance_id
    instance = tables.instances.get(instance_id)
    queued_start = any(
        isinstance(row.message, StartOrchestrationMessage) for row in tables.queue.of(instance_id)
    )
    outcome = StartOutcome.STARTED
    if instance is not None or queued_start:
        if request.if_exists == "use_existing":
            outcome = StartOutcome.EXISTING
        elif (
            request.if_exists == "restart_if_finished"
            and instance is not None
            and not queued_start
            and not instance.restarting
            and instance.status.instance_state().is_terminal
        ):
            instance.restarting = True
            instance.updated_at_ms = now
            outcome = StartOutcome.RESTARTED
        else:
            raise InstanceAlreadyExistsError(instance_id)
    if outcome is not StartOutcome.EXISTING:
        enqueue_nowait(tables, start, None, now)
    for message in request.messages:
        enqueue_nowait(tables, message, None, now)
    return outcome


def fetch_turn_nowait(
    tables: MemoryTables, request: FetchTurnRequest, now: int
) -> OrchestrationWorkItem | None:
    with contextlib.closing(tables.queue.instances_in_arrival_order(now)) as candidates:
        return _lock_first(tables, candidates, request, now)


def _lock_first(
    tables: MemoryTables, candidates: Iterator[str], request: FetchTurnRequest, now: int
) -> OrchestrationWorkItem | None:
    skip = request.skip_instances
    for instance_id in candidates:
        lock = tables.locks.get(instance_id)
        if (lock is not None and lock.locked_until_ms > now) or instance_id in skip:
            continue
        batch = arrival_order(r for r in tables.queue.of(instance_id) if r.visible_at_ms <= now)
        instance = tables.instances.get(instance_id)
        if instance is None and not any(
            isinstance(row.message, StartOrchestrationMessage) for row in batch
        ):
            # Never started: keep what a later start may still want, drop the rest, and
            # move on so these messages cannot starve other instances.
            for row in batch:
                if isinstance(row.message, _ORPHAN_DROPPABLE):
                    tables.queue.remove(row)
            continue
        release_turn_lock(tables, instance_id)
        token = uuid.uuid4().hex
        tables.locks[instance_id] = TurnLock(
            token=token,
            locked_until_ms=now + to_ms(request.lock_timeout),
            owner_id=request.owner_id,
        )
        tables.lock_instances[token] = instance_id
        for row in batch:
            row.lock_token = token
            row.delivery_count += 1
        execution = instance.executions[instance.execution_id] if instance else None
        cached = request.cached_histories.get(instance_id)
        omitted = (
            instance is not None
            and execution is not None
            and cached == (instance.execution_id, len(execution.events))
        )
        return OrchestrationWorkItem(
            instance_id=instance_id,
            lock_token=token,
            execution_id=instance.execution_id if instance else 0,
            instance=instance.record() if instance else None,
            history=list(execution.events) if execution and not omitted else [],
            messages=[row.message for row in batch],
            delivery_count=max(row.delivery_count for row in batch),
            kv_snapshot=dict(instance.kv) if instance and not omitted else {},
            history_omitted=omitted,
        )
    return None


def commit_turn_nowait(tables: MemoryTables, commit: TurnCommit, now: int) -> None:
    op = "commit_turn"
    changes = commit.changes
    instance_id = live_turn_lock(tables, op, commit.lock_token)
    if instance_id != changes.instance_id:
        raise LockLostError(op, "lock token belongs to another instance")
    instance = tables.instances.get(instance_id)
    _validate_commit(op, changes, instance)

    batch = [row for row in tables.queue.of(instance_id) if row.lock_token == commit.lock_token]
    if instance is None:
        start_row = next(
            (r for r in batch if isinstance(r.message, StartOrchestrationMessage)), None
        )
        instance = InstanceRow(
            instance_id=instance_id,
            name=changes.name,
            version=changes.version,
            parent_instance_id=changes.parent_instance_id,
            created_at_ms=start_row.enqueued_at_ms if start_row else now,
            created_seq=start_row.seq if start_row else next(tables.seq),
            updated_at_ms=now,
            execution_id=changes.execution_id,
        )
        tables.instances[instance_id] = instance
    for row in batch:
        tables.queue.remove(row)
    instance.apply_changes(changes, now)
    _apply_queue_writes(tables, changes, now)
    if changes.execution_status.instance_state().is_terminal:
        for row in tables.queue.of(instance_id):
            if isinstance(row.message, TimerFiredMessage):
                tables.queue.remove(row)  # timers an ended instance will never want
    release_turn_lock(tables, instance_id)


def _validate_commit(op: str, changes: TurnChanges, instance: InstanceRow | None) -> None:
    if instance is not None and changes.execution_id < instance.execution_id:
        raise ProviderError(
            op,
            f"execution {changes.execution_id} is older than the current execution "
            f"{instance.execution_id} of {changes.instance_id!r}",
            retryable=False,
        )
    execution = instance.executions.get(changes.execution_id) if instance else None
    seen: set[int] = set() if execution is None else set(execution.event_ids)
    for event in changes.new_events:
        if event.event_id in seen:
            raise DuplicateEventError(
                op,
                f"event id {event.event_id} already exists in execution "
                f"{changes.execution_id} of {changes.instance_id!r}",
            )
        seen.add(event.event_id)


def _apply_queue_writes(tables: MemoryTables, changes: TurnChanges, now: int) -> None:
    """Steps 6-7 of ``commit_turn``: insert then withdraw activities, send messages."""
    for task in changes.activity_tasks:
        tables.work.add(WorkRow(seq=next(tables.seq), task=task, visible_at_ms=now))
    withdrawn = {
        (changes.instance_id, changes.execution_id, seq) for seq in changes.cancelled_activities
    }
    if withdrawn:
        for work in tables.work.rows():
            task = work.task
            if (task.instance_id, task.execution_id, task.seq) in withdrawn:
                tables.work.remove(work)
    for message in changes.orchestrator_messages:
        enqueue_nowait(tables, message.message, message.visible_at_ms, now)


def abandon_turn_nowait(tables: MemoryTables, request: AbandonRequest, now: int) -> None:
    instance_id = live_turn_lock(tables, "abandon_turn", request.lock_token)
    visible_at = now + to_ms(request.delay)
    for row in tables.queue.of(instance_id):
        if row.lock_token == request.lock_token:
            row.lock_token = None
            if request.undo_delivery_count:
                row.delivery_count = max(0, row.delivery_count - 1)
        # Every message of the instance moves, not just the batch: otherwise a message that
        # arrived during the turn would be served alone, ahead of older ones.
        tables.queue.reschedule(row, max(row.visible_at_ms, visible_at))
    release_turn_lock(tables, instance_id)


def renew_turn_lock_nowait(tables: MemoryTables, request: RenewRequest, now: int) -> None:
    instance_id = live_turn_lock(tables, "renew_turn_lock", request.lock_token)
    tables.locks[instance_id].locked_until_ms = now + to_ms(request.extend_for)


def live_turn_lock(tables: MemoryTables, op: str, token: str) -> str:
    """The instance ``token`` locks; raises ``LockLostError`` if it was released or taken over
    (an expired lock nobody took over still fences the instance: see ``Provider``)."""
    instance_id = tables.lock_instances.get(token)
    lock = tables.locks.get(instance_id) if instance_id is not None else None
    if instance_id is None or lock is None or lock.token != token:
        raise LockLostError(op, "lock token is unknown, released or taken over")
    return instance_id


def release_turn_lock(tables: MemoryTables, instance_id: str) -> None:
    lock = tables.locks.pop(instance_id, None)
    if lock is not None:
        tables.lock_instances.pop(lock.token, None)


def row_locked(tables: MemoryTables, row: OrchestratorRow, now: int) -> bool:
    """True if ``row`` is in the batch of a turn whose lock is still live."""
    lock = tables.locks.get(row.instance_id)
    return (
        row.lock_token is not None
        and lock is not None
        and lock.token == row.lock_token
        and lock.locked_until_ms > now
    )


def turn_due(tables: MemoryTables, now: int) -> int | None:
    """The next time a turn fetch could find work without any write happening."""
    times = [row.visible_at_ms for row in tables.queue.rows()]
    times.extend(lock.locked_until_ms for lock in tables.locks.values())
    future = [t for t in times if t > now]
    return min(future) if future else None
