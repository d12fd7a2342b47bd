"""Reads and management for ``InMemoryProvider``: records, histories, KV, listing, deleting,
pruning and queue depths."""

from __future__ import annotations

import collections

from .._errors import InstanceNotFoundError, InstanceStillRunningError, ProviderError
from .._history import HistoryEvent
from .._status import State
from ._memory_state import InstanceRow, MemoryTables, pending_record
from ._memory_turns import release_turn_lock, row_locked
from ._types import (
    LISTED_STATES,
    DeleteRequest,
    DeleteResult,
    ExecutionRecord,
    InstanceCountQuery,
    InstanceCounts,
    InstancePage,
    InstanceQuery,
    InstanceRecord,
    KvEntry,
    PruneRequest,
    PruneResult,
    QueueDepths,
)


def read_history_nowait(
    tables: MemoryTables, instance_id: str, execution_id: int | None
) -> list[HistoryEvent]:
    instance = tables.instances.get(instance_id)
    if instance is None:
        return []
    execution = instance.executions.get(
        instance.execution_id if execution_id is None else execution_id
    )
    return [] if execution is None else list(execution.events)


def read_executions_nowait(tables: MemoryTables, instance_id: str) -> list[ExecutionRecord]:
    instance = tables.instances.get(instance_id)
    if instance is None:
        return []
    return [
        ExecutionRecord(
            execution_id=execution_id,
            status=execution.status,
            started_at_ms=execution.started_at_ms,
            completed_at_ms=execution.completed_at_ms,
            event_count=len(execution.events),
        )
        for execution_id, execution in sorted(instance.executions.items())
    ]


def kv_value_nowait(tables: MemoryTables, instance_id: str, key: str) -> KvEntry | None:
    instance = _kv_owner(tables, instance_id)
    if instance is None:
        return None
    if key in instance.kv_delta:
        return instance.kv_delta[key]
    return instance.kv.get(key)


def kv_items_nowait(tables: MemoryTables, instance_id: str) -> dict[str, KvEntry]:
    instance = _kv_owner(tables, instance_id)
    return {} if instance is None else instance.merged_kv()


def kv_snapshot_nowait(tables: MemoryTables, instance_id: str) -> dict[str, KvEntry]:
    instance = _kv_owner(tables, instance_id)
    return {} if instance is None else dict(instance.kv)


def _kv_owner(tables: MemoryTables, instance_id: str) -> InstanceRow | None:
    """The instance whose KV reads show; None for an unknown one or a queued restart (it
    reads as new: its first turn drops the finished executions' KV)."""
    instance = tables.instances.get(instance_id)
    return None if instance is None or instance.restarting else instance


def list_instances_nowait(tables: MemoryTables, query: InstanceQuery) -> InstancePage:
    records = [(row.record(), row.created_seq) for row in tables.instances.values()]
    for start_row in tables.pending_starts():
        records.append((pending_record(start_row), start_row.seq))
    return _page_instances(records, query)


def count_instances_nowait(tables: MemoryTables, query: InstanceCountQuery) -> InstanceCounts:
    if query.at_most < 0:
        raise ProviderError("count_instances", "at_most must not be negative", retryable=False)
    found = collections.Counter(row.record().state for row in tables.instances.values())
    found[State.PENDING] += sum(1 for _ in tables.pending_starts())
    return InstanceCounts(
        counts={state: min(found[state], query.at_most) for state in LISTED_STATES},
        capped=frozenset(state for state in LISTED_STATES if found[state] > query.at_most),
    )


def children_nowait(tables: MemoryTables, instance_id: str) -> list[str]:
    children = [
        row.instance_id
        for row in tables.instances.values()
        if row.parent_instance_id == instance_id
    ]
    children.extend(
        row.instance_id
        for row in tables.pending_starts()
        if pending_record(row).parent_instance_id == instance_id
    )
    return children


def delete_instance_nowait(tables: MemoryTables, request: DeleteRequest) -> DeleteResult:
    if tables.record(request.instance_id) is None:
        raise InstanceNotFoundError(request.instance_id)
    tree = [request.instance_id]
    for instance_id in tree:  # grows while iterating: breadth-first over descendants
        tree.extend(child for child in children_nowait(tables, instance_id) if child not in tree)
    if not request.force:
        for instance_id in tree:
            record = tables.record(instance_id)
            if record is not None and not record.state.is_terminal:
                raise InstanceStillRunningError(instance_id)
    executions = events = messages = 0
    for instance_id in tree:
        instance = tables.instances.pop(instance_id, None)
        if instance is not None:
            executions += len(instance.executions)
            events += sum(len(e.events) for e in instance.executions.values())
        for row in tables.queue.of(instance_id):
            tables.queue.remove(row)
            messages += 1
        for work in tables.work.rows():
            if work.task.instance_id == instance_id:
                tables.work.remove(work)
                messages += 1
        release_turn_lock(tables, instance_id)
    return DeleteResult(
        instances_deleted=len(tree),
        executions_deleted=executions,
        events_deleted=events,
        messages_deleted=messages,
    )


def prune_nowait(tables: MemoryTables, request: PruneRequest) -> PruneResult:
    instance = tables.instances.get(request.instance_id)
    if instance is None:
        if tables.pending_start(request.instance_id) is not None:
            return PruneResult()
        raise InstanceNotFoundError(request.instance_id)
    ordered = sorted(instance.executions)
    keep = set(ordered[-max(1, request.keep_last) :]) | {instance.execution_id}
    executions = events = 0
    for execution_id in ordered:
        execution = instance.executions[execution_id]
        if execution_id in keep or not execution.status.is_terminal:
            continue
        cutoff = request.completed_before_ms
        if cutoff is not None and (
            execution.completed_at_ms is None or execution.completed_at_ms >= cutoff
        ):
            continue
        del instance.executions[execution_id]
        executions += 1
        events += len(execution.events)
    return PruneResult(executions_deleted=executions, events_deleted=events)


def queue_depths_nowait(tables: MemoryTables, now: int) -> QueueDepths:
    orchestrator = timers = worker = locked = 0
    due: list[int] = []
    for row in tables.queue.rows():
        if row_locked(tables, row, now):
            locked += 1
        elif row.visible_at_ms > now:
            timers += 1
            due.append(row.visible_at_ms)
        else:
            orchestrator += 1
    for work in tables.work.rows():
        if work.is_locked(now):
            locked += 1
        elif work.visible_at_ms <= now:
            worker += 1
        else:
            due.append(work.visible_at_ms)
    return QueueDepths(
        orchestrator=orchestrator,
        timers=timers,
        worker=worker,
        locked=locked,
        next_due_ms=min(due, default=None),
    )


# -- listing ------------------------------------------------------------------------------------


def _sort_key(record: InstanceRecord, seq: int) -> tuple[int, int]:
    return (record.created_at_ms, seq)


def _encode_continuation(key: tuple[int, int]) -> str:
    return f"{key[0]}.{key[1]}"


def _decode_continuation(token: str) -> tuple[int, int]:
    try:
        created, _, seq = token.partition(".")
        return (int(created), int(seq))
    except ValueError:
        raise ProviderError(
            "list_instances", f"invalid continuation token {token!r}", retryable=False
        ) from None


def _matches(record: InstanceRecord, query: InstanceQuery) -> bool:
    if query.states is not None and record.state not in query.states:
        return False
    if query.name is not None and record.name != query.name:
        return False
    if query.parent_instance_id is not None and (
        record.parent_instance_id != query.parent_instance_id
    ):
        return False
    if query.created_after_ms is not None and record.created_at_ms <= query.created_after_ms:
        return False
    if query.instance_id_prefix and not record.instance_id.startswith(query.instance_id_prefix):
        return False
    if query.completed_before_ms is not None and (
        record.completed_at_ms is None or record.completed_at_ms >= query.completed_before_ms
    ):
        return False
    if query.min_execution_id is not None and record.execution_id < query.min_execution_id:
        return False
    return not (
        query.created_before_ms is not None and record.created_at_ms >= query.created_before_ms
    )


def _page_instances(
    records: list[tuple[InstanceRecord, int]], query: InstanceQuery
) -> InstancePage:
    """Newest first; the continuation is the (created_at, seq) key of the last row returned."""
    if query.limit < 1:
        raise ProviderError("list_instances", "limit must be at least 1", retryable=False)
    after = _decode_continuation(query.continuation) if query.continuation else None
    rows = sorted(
        ((_sort_key(record, seq), record) for record, seq in records if _matches(record, query)),
        key=lambda pair: pair[0],
        reverse=True,
    )
    if after is not None:
        rows = [pair for pair in rows if pair[0] < after]
    page = rows[: query.limit]
    more = len(rows) > query.limit
    return InstancePage(
        instances=[record for _, record in page],
        continuation=_encode_continuation(page[-1][0]) if more and page else None,
    )
