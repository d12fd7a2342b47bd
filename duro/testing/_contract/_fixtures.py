"""Builders the contract suite (part 2) shares: messages, tasks, turns and instance set-ups.

Every set-up goes through the public provider methods only, exactly as the runtime would:
start message, ``fetch_turn``, ``commit_turn``. Event ids are numbered by :func:`turn_commit`
so tests state *what* a turn does, not its bookkeeping.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec
import pytest

from ..._history import (
    ContinuedAsNew,
    EventRaised,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    ParentRef,
)
from ..._messages import (
    ActivityResultMessage,
    ActivityTask,
    ContinueAsNewMessage,
    RaiseEventMessage,
    StartOrchestrationMessage,
)
from ..._status import ErrorCategory, ErrorInfo
from ...providers import Provider
from ...providers._types import (
    ActivityWorkItem,
    ExecutionStatus,
    FetchActivityRequest,
    FetchTurnRequest,
    KvChange,
    OrchestrationWorkItem,
    ScheduledMessage,
    TagFilter,
    TurnChanges,
    TurnCommit,
)
from ._base import CONTRACT_EPOCH_MS

ORCH_NAME: Final = "TestOrch"
ORCH_VERSION: Final = "1.0.0"
ACTIVITY_NAME: Final = "TestActivity"
SETUP_LOCK_TIMEOUT: Final = 30.0
"""Lock timeout of set-up fetches; set-ups always commit, so it never matters."""


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""Custom status argument meaning "this turn does not touch it"."""


# -- payloads and errors ------------------------------------------------------------------------


def payload(value: object) -> bytes:
    """``value`` as raw JSON bytes (the form outputs, KV values and custom status take)."""
    return msgspec.json.encode(value)


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(payload(value))


def app_error(message: str = "boom") -> ErrorInfo:
    return ErrorInfo(category=ErrorCategory.APPLICATION, error_type="ValueError", message=message)


# -- messages and tasks -------------------------------------------------------------------------


def start_message(
    instance_id: str,
    *,
    name: str = ORCH_NAME,
    version: str | None = None,
    input: object = None,
    parent: ParentRef | None = None,
) -> StartOrchestrationMessage:
    return StartOrchestrationMessage(
        instance_id=instance_id, name=name, version=version, input=raw(input), parent=parent
    )


def external_event(instance_id: str, name: str = "poke", data: object = None) -> ScheduledMessage:
    return ScheduledMessage(
        message=RaiseEventMessage(instance_id=instance_id, name=name, data=raw(data))
    )


def activity_task(
    instance_id: str,
    seq: int,
    *,
    execution_id: int = 1,
    name: str = ACTIVITY_NAME,
    input: object = None,
    tag: str | None = None,
    session: str | None = None,
) -> ActivityTask:
    return ActivityTask(
        instance_id=instance_id,
        execution_id=execution_id,
        seq=seq,
        name=name,
        input=raw(input),
        tag=tag,
        session=session,
        orchestration_name=ORCH_NAME,
        orchestration_version=ORCH_VERSION,
    )


def activity_result(task: ActivityTask, value: object = "done") -> ScheduledMessage:
    """The completion a worker commits for ``task``."""
    return ScheduledMessage(
        message=ActivityResultMessage(
            instance_id=task.instance_id,
            execution_id=task.execution_id,
            seq=task.seq,
            result=raw(value),
        )
    )


def kv_set(key: str, value: object, *, at_ms: int) -> KvChange:
    return KvChange(key=key, value=payload(value), updated_at_ms=at_ms)


def kv_delete(key: str, *, at_ms: int) -> KvChange:
    return KvChange(key=key, value=None, updated_at_ms=at_ms)


# -- requests -----------------------------------------------------------------------------------


def turn_request(lock_timeout: float = SETUP_LOCK_TIMEOUT) -> FetchTurnRequest:
    return FetchTurnRequest(lock_timeout=lock_timeout)


def activity_request(
    lock_timeout: float = SETUP_LOCK_TIMEOUT,
    *,
    tag_filter: TagFilter | None = None,
    session_owner: str | None = None,
    session_lock_timeout: float = 30.0,
) -> FetchActivityRequest:
    return FetchActivityRequest(
        lock_timeout=lock_timeout,
        tag_filter=TagFilter() if tag_filter is None else tag_filter,
        session_owner=session_owner,
        session_lock_timeout=session_lock_timeout,
    )


# -- turns --------------------------------------------------------------------------------------


def _numbered(events: Iterable[HistoryEvent], first_id: int) -> list[HistoryEvent]:
    return [
        msgspec.structs.replace(event, event_id=first_id + offset, ts=CONTRACT_EPOCH_MS)
        for offset, event in enumerate(events)
    ]


def _opening_message(
    item: OrchestrationWorkItem,
) -> StartOrchestrationMessage | ContinueAsNewMessage | None:
    for message in item.messages:
        if isinstance(message, StartOrchestrationMessage | ContinueAsNewMessage):
            return message
    return None


def turn_commit(
    item: OrchestrationWorkItem,
    *,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
    events: Sequence[HistoryEvent] = (),
    output: object = None,
    error: ErrorInfo | None = None,
    custom_status: bytes | _Unchanged | None = UNCHANGED,
    kv_clear_all: bool = False,
    kv_changes: Sequence[KvChange] = (),
    activity_tasks: Sequence[ActivityTask] = (),
    cancelled_activities: Sequence[int] = (),
    orchestrator_messages: Sequence[ScheduledMessage] = (),
    version: str = ORCH_VERSION,
) -> TurnCommit:
    """The commit a runtime would send for ``item``.

    A batch holding a ``StartOrchestrationMessage`` (new instance) or a
    ``ContinueAsNewMessage`` opens a new execution: its history starts with
    ``OrchestrationStarted``. ``events`` (event ids are renumbered) follow, then the terminal
    event ``status`` implies.
    """
    opening = _opening_message(item)
    # A start opens the first execution, or the next one of a restarted instance (its record
    # reads as PENDING with the finished execution's id).
    restarting = item.instance is not None and item.instance.execution_status is None
    opens_execution = (
        opening is not None and (item.execution_id == 0 or restarting)
    ) or isinstance(opening, ContinueAsNewMessage)
    parent: str | None = item.instance.parent_instance_id if item.instance else None
    name = item.instance.name if item.instance else ORCH_NAME
    history: list[HistoryEvent] = []
    if opens_execution and opening is not None:
        execution_id = (
            opening.execution_id
            if isinstance(opening, ContinueAsNewMessage)
            else item.execution_id + 1
        )
        name = opening.name
        if opening.parent is not None:
            parent = opening.parent.instance_id
        history.append(
            OrchestrationStarted(
                event_id=1,
                ts=CONTRACT_EPOCH_MS,
                name=name,
                version=version,
                input=opening.input,
                parent=opening.parent,
            )
        )
    else:
        execution_id = item.execution_id
    history.extend(events)
    output_json = payload(output) if status is ExecutionStatus.COMPLETED else None
    if status is ExecutionStatus.COMPLETED:
        history.append(OrchestrationCompleted(event_id=0, ts=0, output=raw(output)))
    elif status is ExecutionStatus.FAILED:
        error = error or app_error()
        history.append(OrchestrationFailed(event_id=0, ts=0, error=error))
    elif status is ExecutionStatus.CONTINUED_AS_NEW:
        history.append(ContinuedAsNew(event_id=0, ts=0, input=raw(output)))
    first_id = 1 if opens_execution else len(item.history) + 1
    changes = TurnChanges(
        instance_id=item.instance_id,
        execution_id=execution_id,
        new_events=_numbered(history, first_id),
        name=name,
        version=version,
        execution_status=status,
        parent_instance_id=parent,
        output=output_json,
        error=error if status is ExecutionStatus.FAILED else None,
        custom_status_changed=custom_status is not UNCHANGED,
        custom_status=None if isinstance(custom_status, _Unchanged) else custom_status,
        kv_clear_all=kv_clear_all,
        kv_changes={change.key: change for change in kv_changes},
        activity_tasks=list(activity_tasks),
        cancelled_activities=list(cancelled_activities),
        orchestrator_messages=list(orchestrator_messages),
    )
    return TurnCommit(lock_token=item.lock_token, changes=changes)


def idle_commit(item: OrchestrationWorkItem) -> TurnCommit:
    """A turn that only consumes its batch: no events, the execution's state unchanged.

    What a runtime commits for messages that reach a finished execution.
    """
    record = item.instance
    if record is None:
        pytest.fail(f"{item.instance_id!r} has no committed turn to keep")
    changes = TurnChanges(
        instance_id=item.instance_id,
        execution_id=item.execution_id,
        name=record.name,
        version=record.version or ORCH_VERSION,
        execution_status=record.execution_status or ExecutionStatus.RUNNING,
        parent_instance_id=record.parent_instance_id,
        output=record.output,
        error=record.error,
    )
    return TurnCommit(lock_token=item.lock_token, changes=changes)


# -- set-ups ------------------------------------------------------------------------------------


async def lock_instance(
    provider: Provider, instance_id: str, *, lock_timeout: float = SETUP_LOCK_TIMEOUT
) -> OrchestrationWorkItem:
    """Fetch the next turn, which the test arranged to be ``instance_id``'s."""
    item = await provider.fetch_turn(turn_request(lock_timeout))
    if item is None:
        pytest.fail(f"expected a turn for {instance_id!r}, fetch_turn returned None")
    if item.instance_id != instance_id:
        pytest.fail(f"expected a turn for {instance_id!r}, got one for {item.instance_id!r}")
    return item


async def start_and_lock(
    provider: Provider,
    instance_id: str,
    *,
    name: str = ORCH_NAME,
    parent: ParentRef | None = None,
    lock_timeout: float = SETUP_LOCK_TIMEOUT,
) -> OrchestrationWorkItem:
    """Enqueue a start for a new instance and lock its first turn."""
    await provider.start_orchestration(start_message(instance_id, name=name, parent=parent))
    return await lock_instance(provider, instance_id, lock_timeout=lock_timeout)


async def create_instance(
    provider: Provider,
    instance_id: str,
    *,
    name: str = ORCH_NAME,
    parent: str | None = None,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
    output: object = None,
    custom_status: bytes | _Unchanged | None = UNCHANGED,
    kv_changes: Sequence[KvChange] = (),
    activity_tasks: Sequence[ActivityTask] = (),
) -> TurnCommit:
    """Start ``instance_id`` and commit its first turn; returns that commit."""
    parent_ref = None if parent is None else ParentRef(instance_id=parent, execution_id=1, seq=1)
    item = await start_and_lock(provider, instance_id, name=name, parent=parent_ref)
    commit = turn_commit(
        item,
        status=status,
        output=output,
        custom_status=custom_status,
        kv_changes=kv_changes,
        activity_tasks=activity_tasks,
    )
    await provider.commit_turn(commit)
    return commit


async def lock_next_turn(
    provider: Provider, instance_id: str, *, lock_timeout: float = SETUP_LOCK_TIMEOUT
) -> OrchestrationWorkItem:
    """Poke an existing instance with an external event and lock the turn it causes."""
    await provider.enqueue_orchestrator_message(external_event(instance_id))
    return await lock_instance(provider, instance_id, lock_timeout=lock_timeout)


async def next_turn(
    provider: Provider,
    instance_id: str,
    *,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
    output: object = None,
    error: ErrorInfo | None = None,
    custom_status: bytes | _Unchanged | None = UNCHANGED,
    kv_clear_all: bool = False,
    kv_changes: Sequence[KvChange] = (),
    activity_tasks: Sequence[ActivityTask] = (),
    cancelled_activities: Sequence[int] = (),
    orchestrator_messages: Sequence[ScheduledMessage] = (),
) -> TurnCommit:
    """Run (and commit) one more turn of a running instance; returns the commit."""
    item = await lock_next_turn(provider, instance_id)
    commit = turn_commit(
        item,
        status=status,
        events=[EventRaised(event_id=0, ts=0, name="poke")],
        output=output,
        error=error,
        custom_status=custom_status,
        kv_clear_all=kv_clear_all,
        kv_changes=kv_changes,
        activity_tasks=activity_tasks,
        cancelled_activities=cancelled_activities,
        orchestrator_messages=orchestrator_messages,
    )
    await provider.commit_turn(commit)
    return commit


async def continue_as_new_and_lock(
    provider: Provider,
    instance_id: str,
    *,
    kv_changes: Sequence[KvChange] = (),
    kv_clear_all: bool = False,
) -> OrchestrationWorkItem:
    """End the current execution with continue-as-new; lock the turn that opens the next."""
    item = await lock_next_turn(provider, instance_id)
    next_execution = ContinueAsNewMessage(
        instance_id=instance_id,
        execution_id=item.execution_id + 1,
        name=item.instance.name if item.instance else ORCH_NAME,
        version=ORCH_VERSION,
    )
    await provider.commit_turn(
        turn_commit(
            item,
            status=ExecutionStatus.CONTINUED_AS_NEW,
            events=[EventRaised(event_id=0, ts=0, name="poke")],
            kv_changes=kv_changes,
            kv_clear_all=kv_clear_all,
            orchestrator_messages=[ScheduledMessage(message=next_execution)],
        )
    )
    return await lock_instance(provider, instance_id)


async def continue_as_new(
    provider: Provider,
    instance_id: str,
    *,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
    kv_changes: Sequence[KvChange] = (),
    activity_tasks: Sequence[ActivityTask] = (),
) -> TurnCommit:
    """Continue-as-new and commit the new execution's first turn; returns that commit."""
    item = await continue_as_new_and_lock(provider, instance_id)
    commit = turn_commit(item, status=status, kv_changes=kv_changes, activity_tasks=activity_tasks)
    await provider.commit_turn(commit)
    return commit


async def create_executions(provider: Provider, instance_id: str, count: int) -> None:
    """An instance whose executions 1..count-1 continued-as-new; execution ``count`` runs."""
    await create_instance(provider, instance_id)
    for _ in range(count - 1):
        await continue_as_new(provider, instance_id)


async def schedule_activities(
    provider: Provider, instance_id: str, tasks: Sequence[ActivityTask]
) -> None:
    """Create ``instance_id`` with a first turn that schedules ``tasks``."""
    await create_instance(provider, instance_id, activity_tasks=tasks)


async def fetch_all_activities(
    provider: Provider, request: FetchActivityRequest | None = None
) -> list[ActivityWorkItem]:
    """Lock every work item ``request`` can see, oldest first."""
    request = request or activity_request()
    items: list[ActivityWorkItem] = []
    while (item := await provider.fetch_activity(request)) is not None:
        items.append(item)
    return items


def seqs(items: Iterable[ActivityWorkItem]) -> list[int]:
    return [item.task.seq for item in items]
