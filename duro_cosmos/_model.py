"""Pure translations between provider-contract objects and documents (no I/O)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import msgspec

from duro._errors import DuplicateEventError, ProviderError
from duro._history import HistoryEvent, decode_events, encode_events
from duro._messages import (
    ActivityTask,
    AnyOrchestratorMessage,
    StartOrchestrationMessage,
    encode_message,
)
from duro._status import ErrorInfo, ExecutionStatus, State
from duro.providers._types import InstanceRecord, KvChange, KvEntry, TurnCommit

from ._documents import (
    SEQUENCE,
    ExecutionInfo,
    HistoryDoc,
    InstanceDoc,
    KvDoc,
    KvSlot,
    QueueDoc,
    WorkDoc,
    history_doc_id,
    kv_bucket,
    slot_of,
)

_error_decoder = msgspec.json.Decoder(ErrorInfo)


def text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def raw(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def encode_error(error: ErrorInfo | None) -> str | None:
    return None if error is None else msgspec.json.encode(error).decode()


def decode_error(value: str | None) -> ErrorInfo | None:
    return None if value is None else _error_decoder.decode(value)


def record_of(doc: InstanceDoc) -> InstanceRecord:
    if doc.state == "pending":
        return InstanceRecord(
            instance_id=doc.instance_id,
            state=State.PENDING,
            name=doc.name,
            version=doc.version,
            parent_instance_id=doc.parent_instance_id,
            created_at_ms=doc.created_at,
            updated_at_ms=doc.created_at,
        )
    # A queued restart reads as PENDING: the finished execution's outcome and custom status
    # are not shown.
    status = None if doc.restarting else ExecutionStatus(_status_of(doc))
    return InstanceRecord(
        instance_id=doc.instance_id,
        state=State.PENDING if status is None else status.instance_state(),
        name=doc.name,
        version=doc.version,
        execution_id=doc.execution_id,
        execution_status=status,
        output=None if status is None else raw(doc.output),
        error=None if status is None else decode_error(doc.error),
        custom_status=None if doc.restarting else raw(doc.custom_status),
        custom_status_version=doc.custom_status_version,
        parent_instance_id=doc.parent_instance_id,
        created_at_ms=doc.created_at,
        updated_at_ms=doc.updated_at,
        completed_at_ms=None if status is None else doc.completed_at,
    )


def _status_of(doc: InstanceDoc) -> str:
    info = doc.execution(doc.execution_id)
    return info.status if info is not None else ExecutionStatus.RUNNING.value


def queue_doc(
    message: AnyOrchestratorMessage, doc_id: str, visible_at: int, now: int, seq: int | None = None
) -> QueueDoc:
    return QueueDoc(
        id=doc_id,
        instance_id=message.instance_id,
        slot=slot_of(message.instance_id),
        visible_at=visible_at,
        seq=SEQUENCE.next() if seq is None else seq,
        enqueued_at=now,
        kind=type(message).__name__,
        msg=encode_message(message).decode(),
    )


def pending_instance(start: StartOrchestrationMessage, now: int, seq: int) -> InstanceDoc:
    return InstanceDoc(
        id="instance",
        instance_id=start.instance_id,
        state="pending",
        name=start.name,
        version=start.version,
        parent_instance_id=start.parent.instance_id if start.parent else None,
        created_at=now,
        created_seq=seq,
        updated_at=now,
        slot=slot_of(start.instance_id),
    )


# -- history ------------------------------------------------------------------------------------


def _contains(ranges: Sequence[Sequence[int]], event_id: int) -> bool:
    return any(lo <= event_id <= hi for lo, hi in ranges)


def _merge(ranges: Iterable[Sequence[int]], ids: Iterable[int]) -> list[list[int]]:
    points = sorted({*ids})
    spans = [list(r) for r in ranges] + [[i, i] for i in points]
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def check_new_events(op: str, commit: TurnCommit, doc: InstanceDoc | None) -> None:
    """Refuse an older execution and any event id the execution already has (or repeats)."""
    if doc is not None and doc.state == "active" and commit.changes.execution_id < doc.execution_id:
        raise ProviderError(
            op,
            f"execution {commit.changes.execution_id} is older than the current execution "
            f"{doc.execution_id} of {commit.changes.instance_id!r}",
            retryable=False,
        )
    info = doc.execution(commit.changes.execution_id) if doc is not None else None
    ranges = info.event_ranges if info is not None else []
    seen: set[int] = set()
    for event in commit.changes.new_events:
        if event.event_id in seen or _contains(ranges, event.event_id):
            raise DuplicateEventError(
                op,
                f"event id {event.event_id} already exists in execution "
                f"{commit.changes.execution_id} of {commit.changes.instance_id!r}",
            )
        seen.add(event.event_id)


def history_cached(instance: InstanceDoc, cached: Mapping[str, tuple[int, int]]) -> bool:
    """Whether the caller holds the current execution's whole history (the history query
    can be skipped): its ``(execution id, event count)`` matches the instance document's."""
    held = cached.get(instance.instance_id)
    if held is None or instance.state != "active":
        return False
    info = next((e for e in instance.executions if e.execution_id == instance.execution_id), None)
    return info is not None and held == (instance.execution_id, info.event_count)


def history_doc(commit: TurnCommit) -> HistoryDoc | None:
    if not commit.changes.new_events:
        return None
    events = list(commit.changes.new_events)
    first = min(event.event_id for event in events)
    return HistoryDoc(
        id=history_doc_id(commit.changes.execution_id, first),
        instance_id=commit.changes.instance_id,
        execution_id=commit.changes.execution_id,
        first_event_id=first,
        count=len(events),
        events=encode_events(events).decode(),
    )


def events_of(docs: Iterable[HistoryDoc]) -> list[HistoryEvent]:
    out: list[HistoryEvent] = []
    for doc in docs:
        out.extend(decode_events(doc.events))
    out.sort(key=lambda event: event.event_id)
    return out


# -- the instance document after a commit -------------------------------------------------------


def apply_commit(
    doc: InstanceDoc, commit: TurnCommit, now: int, commit_id: str, batch: Collection[str]
) -> InstanceDoc:
    """Steps 2 and 4 of ``commit_turns`` on the instance document (lock released; ``batch``
    are the consumed messages, whose delivery counts go with them)."""
    first_turn = doc.state == "pending"
    executions = [msgspec.structs.replace(e) for e in doc.executions]
    info = next((e for e in executions if e.execution_id == commit.changes.execution_id), None)
    if info is None:
        info = ExecutionInfo(execution_id=commit.changes.execution_id, started_at=now)
        executions.append(info)
        executions.sort(key=lambda e: e.execution_id)
    ids = [event.event_id for event in commit.changes.new_events]
    info.event_ranges = _merge(info.event_ranges, ids)
    info.event_count += len(ids)
    status = commit.changes.execution_status
    info.status = status.value
    if status.is_terminal and info.completed_at is None:
        info.completed_at = now
    elif not status.is_terminal:
        info.completed_at = None  # a rewound execution runs again
    custom_status, version = doc.custom_status, doc.custom_status_version
    if commit.changes.custom_status_changed:
        custom_status, version = text(commit.changes.custom_status), version + 1
    return msgspec.structs.replace(
        doc,
        state="active",
        name=commit.changes.name,
        version=commit.changes.version,
        parent_instance_id=(
            commit.changes.parent_instance_id
            if first_turn or doc.parent_instance_id is None
            else doc.parent_instance_id
        ),
        updated_at=now,
        completed_at=now if status.instance_state().is_terminal else None,
        execution_id=commit.changes.execution_id,
        executions=executions,
        output=text(commit.changes.output),
        error=encode_error(commit.changes.error),
        custom_status=custom_status,
        custom_status_version=version,
        status=status.instance_state().value,
        lock=None,
        delivery_counts={k: v for k, v in doc.delivery_counts.items() if k not in batch},
        last_commit_id=commit_id,
        restarting=False,
        etag=None,
    )


# -- KV -----------------------------------------------------------------------------------------


def kv_snapshot(buckets: Iterable[KvDoc]) -> dict[str, KvEntry]:
    """Committed entries only (what the next turn replays on top of)."""
    out: dict[str, KvEntry] = {}
    for bucket in buckets:
        for key, entry in bucket.entries.items():
            if entry.cv is not None:
                out[key] = KvEntry(value=entry.cv.encode(), updated_at_ms=entry.ct)
    return out


def kv_merged(buckets: Iterable[KvDoc]) -> dict[str, KvEntry]:
    """The client view: the running execution's delta over the committed entries."""
    out: dict[str, KvEntry] = {}
    for bucket in buckets:
        for key, entry in bucket.entries.items():
            if entry.d:
                if entry.dv is not None:
                    out[key] = KvEntry(value=entry.dv.encode(), updated_at_ms=entry.dt)
            elif entry.cv is not None:
                out[key] = KvEntry(value=entry.cv.encode(), updated_at_ms=entry.ct)
    return out


def kv_apply(
    instance_id: str,
    buckets: dict[str, KvDoc],
    clear_all: bool,
    changes: Iterable[KvChange],
    merge: bool,
    *,
    restarted: bool = False,
) -> tuple[list[KvDoc], list[str]]:
    """The bucket documents to upsert and the bucket ids to delete after a commit;
    ``restarted``: a restart's first commit, which starts from no KV at all."""
    entries: dict[str, dict[str, KvSlot]] = {
        bucket_id: {}
        if restarted
        else {k: msgspec.structs.replace(v) for k, v in doc.entries.items()}
        for bucket_id, doc in buckets.items()
    }
    touched: set[str] = set(entries) if restarted else set()
    if clear_all:
        for bucket_id, bucket in entries.items():
            for entry in bucket.values():
                entry.d, entry.dv, entry.dt = True, None, 0
            touched.add(bucket_id)
    for change in changes:
        bucket_id = kv_bucket(change.key)
        entry = entries.setdefault(bucket_id, {}).setdefault(change.key, KvSlot())
        entry.d, entry.dv, entry.dt = True, text(change.value), change.updated_at_ms
        touched.add(bucket_id)
    if merge:
        for bucket_id, bucket in entries.items():
            for entry in bucket.values():
                if entry.d:
                    entry.cv, entry.ct = entry.dv, entry.dt
                    entry.d, entry.dv, entry.dt = False, None, 0
                    touched.add(bucket_id)
    upserts: list[KvDoc] = []
    deletes: list[str] = []
    for bucket_id in sorted(touched):
        kept = {k: v for k, v in entries[bucket_id].items() if v.d or v.cv is not None}
        if kept:
            upserts.append(KvDoc(id=bucket_id, instance_id=instance_id, entries=kept))
        elif bucket_id in buckets:
            deletes.append(bucket_id)
    return upserts, deletes


def work_doc(task: ActivityTask, doc_id: str, now: int) -> WorkDoc:
    return WorkDoc(
        id=doc_id,
        instance_id=task.instance_id,
        slot=slot_of(task.instance_id),
        execution_id=task.execution_id,
        seq_no=task.seq,
        visible_at=now,
        seq=SEQUENCE.next(),
        tag=task.tag,
        session=task.session,
        task=encode_message(task).decode(),
    )


def to_ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(0, round(seconds * 1000))
