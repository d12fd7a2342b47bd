"""The in-memory provider: the reference implementation of the provider contract.

State lives in plain dicts. Every operation does its reads and writes between two awaits, so
it is atomic with respect to every other task on the event loop; ``commit_turn`` validates the
whole commit before it changes anything, so a rejected commit leaves no trace.

Choices where the contract leaves room (the shared suite pins the first two):

* messages for an instance that was never started are skipped, not returned; orphaned
  ``EnqueueEventMessage``/``CancelOrchestrationMessage`` messages are dropped, everything else
  waits for a start;
* ``abandon_turn(delay=...)`` holds back every message of the instance that would be visible
  sooner, including arrivals during the turn, so the retried batch keeps its order;
* a commit for an execution older than the current one is refused (permanent error).
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TypeVar

import anyio.lowlevel

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import (
    DuplicateEventError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InstanceStillRunningError,
    LockLostError,
    ProviderError,
)
from .._history import HistoryEvent
from .._messages import (
    AnyOrchestratorMessage,
    CancelOrchestrationMessage,
    EnqueueEventMessage,
    StartOrchestrationMessage,
)
from ._interface import Provider
from ._memory_state import (
    InstanceRow,
    OrchestratorQueue,
    OrchestratorRow,
    SessionRow,
    TurnLock,
    WorkQueue,
    WorkRow,
    arrival_order,
    page_instances,
    pending_record,
    to_ms,
)
from ._signal import WorkSignal
from ._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    DeleteRequest,
    DeleteResult,
    FetchActivityRequest,
    FetchTurnRequest,
    InstancePage,
    InstanceQuery,
    InstanceRecord,
    KvEntry,
    OrchestrationWorkItem,
    PruneRequest,
    PruneResult,
    QueueDepths,
    RenewRequest,
    ScheduledMessage,
    SessionRenewal,
    TurnChanges,
    TurnCommit,
)

Item = TypeVar("Item", OrchestrationWorkItem, ActivityWorkItem)
FetchRequest = FetchTurnRequest | FetchActivityRequest
C = TypeVar("C", TurnCommit, ActivityCommit)

_ORPHAN_DROPPABLE = (EnqueueEventMessage, CancelOrchestrationMessage)


class InMemoryProvider(Provider):
    """Keeps everything in process memory; for tests, examples and single-process tools.

    Safe for any number of tasks on one event loop. Long-polls: a waiting fetch wakes when a
    write makes work available, or when a timer or lock expiry is due.
    """

    name = "memory"
    fetches_with_commits = True

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._seq = itertools.count(1)
        self._instances: dict[str, InstanceRow] = {}
        self._queue = OrchestratorQueue()
        self._locks: dict[str, TurnLock] = {}
        self._lock_instances: dict[str, str] = {}
        """Turn lock token -> instance id."""
        self._work = WorkQueue()
        self._sessions: dict[str, SessionRow] = {}
        self._turn_signal = WorkSignal()
        self._activity_signal = WorkSignal()

    def __repr__(self) -> str:
        return f"InMemoryProvider(clock={self._clock!r})"

    # -- client side ----------------------------------------------------------------------------

    async def start_orchestration(self, start: StartOrchestrationMessage) -> None:
        await anyio.lowlevel.checkpoint()
        if self._record(start.instance_id) is not None:
            raise InstanceAlreadyExistsError(start.instance_id)
        self._enqueue(start, None, self._clock.now_ms())
        self._turn_signal.notify()

    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        await anyio.lowlevel.checkpoint()
        self._enqueue(message.message, message.visible_at_ms, self._clock.now_ms())
        self._turn_signal.notify()

    # -- orchestration turns --------------------------------------------------------------------

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        await anyio.lowlevel.checkpoint()
        deadline = self._clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = self._turn_signal.current()
            now = self._clock.now_ms()
            items = self._take_all(partial(self._fetch_turn_nowait, request, now), request)
            if items or now >= deadline:
                return items
            await WorkSignal.wait(self._clock, event, self._wait_s(now, deadline, self._turn_due))

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[ProviderError | None]:
        await anyio.lowlevel.checkpoint()
        return [_failure_of(self._commit_turn_nowait, commit) for commit in commits]

    def _commit_turn_nowait(self, commit: TurnCommit) -> None:
        now = self._clock.now_ms()
        op = "commit_turn"
        changes = commit.changes
        instance_id = self._live_turn_lock(op, commit.lock_token, now)
        if instance_id != changes.instance_id:
            raise LockLostError(op, "lock token belongs to another instance")
        instance = self._instances.get(instance_id)
        self._validate_commit(op, changes, instance)

        batch = [row for row in self._queue.of(instance_id) if row.lock_token == commit.lock_token]
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
                created_seq=start_row.seq if start_row else next(self._seq),
                updated_at_ms=now,
                execution_id=changes.execution_id,
            )
            self._instances[instance_id] = instance
        for row in batch:
            self._queue.remove(row)
        instance.apply_changes(changes, now)
        self._apply_queue_writes(changes, now)
        self._release_turn_lock(instance_id)
        self._turn_signal.notify()
        if changes.activity_tasks:
            self._activity_signal.notify()

    async def abandon_turn(self, request: AbandonRequest) -> None:
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        instance_id = self._live_turn_lock("abandon_turn", request.lock_token, now)
        visible_at = now + to_ms(request.delay)
        for row in self._queue.of(instance_id):
            if row.lock_token == request.lock_token:
                row.lock_token = None
                if request.undo_delivery_count:
                    row.delivery_count = max(0, row.delivery_count - 1)
            # Every message of the instance moves, not just the batch: otherwise a message that
            # arrived during the turn would be served alone, ahead of older ones.
            self._queue.reschedule(row, max(row.visible_at_ms, visible_at))
        self._release_turn_lock(instance_id)
        self._turn_signal.notify()

    async def renew_turn_lock(self, request: RenewRequest) -> None:
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        instance_id = self._live_turn_lock("renew_turn_lock", request.lock_token, now)
        self._locks[instance_id].locked_until_ms = now + to_ms(request.extend_for)

    # -- activity work items --------------------------------------------------------------------

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        await anyio.lowlevel.checkpoint()
        deadline = self._clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = self._activity_signal.current()
            now = self._clock.now_ms()
            items = self._take_all(partial(self._fetch_activity_nowait, request, now), request)
            if items or now >= deadline:
                return items
            await WorkSignal.wait(
                self._clock, event, self._wait_s(now, deadline, self._activity_due)
            )

    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        await anyio.lowlevel.checkpoint()
        return [_failure_of(self._complete_activity_nowait, commit) for commit in commits]

    def _complete_activity_nowait(self, commit: ActivityCommit) -> None:
        now = self._clock.now_ms()
        row = self._live_work_row("complete_activity", commit.lock_token, now)
        self._work.remove(row)
        self._touch_session(row, now)
        self._activity_signal.notify()
        if commit.result is not None:
            self._enqueue(commit.result.message, commit.result.visible_at_ms, now)
            self._turn_signal.notify()

    async def abandon_activity(self, request: AbandonRequest) -> None:
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        row = self._live_work_row("abandon_activity", request.lock_token, now)
        self._work.unlock(row)
        row.visible_at_ms = now + to_ms(request.delay)
        if request.undo_delivery_count:
            row.delivery_count = max(0, row.delivery_count - 1)
        self._activity_signal.notify()

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        row = self._live_work_row("renew_activity_lock", request.lock_token, now)
        row.locked_until_ms = now + to_ms(request.extend_for)
        self._touch_session(row, now)

    # -- sessions -------------------------------------------------------------------------------

    async def renew_sessions(self, request: SessionRenewal) -> int:
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        owners = set(request.owner_ids)
        active_since = now - to_ms(request.idle_timeout)
        renewed = 0
        for session in self._sessions.values():
            if (
                session.owner_id in owners
                and session.is_live(now)
                and session.last_activity_ms > active_since
            ):
                session.locked_until_ms = now + to_ms(request.extend_for)
                renewed += 1
        return renewed

    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        # An expired session is one its owner stopped renewing (idle, or the owner is gone), so
        # expiry alone decides here; ``idle_timeout`` serves stores that sweep by last activity.
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        referenced = {row.task.session for row in self._work.rows()}
        orphans = [
            session_id
            for session_id, session in self._sessions.items()
            if not session.is_live(now) and session_id not in referenced
        ]
        for session_id in orphans:
            del self._sessions[session_id]
        return len(orphans)

    # -- reads ----------------------------------------------------------------------------------

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        await anyio.lowlevel.checkpoint()
        return self._record(instance_id)

    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is None:
            return []
        execution = instance.executions.get(
            instance.execution_id if execution_id is None else execution_id
        )
        return [] if execution is None else list(execution.events)

    async def list_executions(self, instance_id: str) -> list[int]:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        return [] if instance is None else sorted(instance.executions)

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is None:
            return None
        if key in instance.kv_delta:
            return instance.kv_delta[key]
        return instance.kv.get(key)

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        return {} if instance is None else instance.merged_kv()

    # -- management -----------------------------------------------------------------------------

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        await anyio.lowlevel.checkpoint()
        records = [(row.record(), row.created_seq) for row in self._instances.values()]
        for start_row in self._pending_starts():
            records.append((pending_record(start_row), start_row.seq))
        return page_instances(records, query)

    async def list_children(self, instance_id: str) -> list[str]:
        await anyio.lowlevel.checkpoint()
        return self._children(instance_id)

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        await anyio.lowlevel.checkpoint()
        if self._record(request.instance_id) is None:
            raise InstanceNotFoundError(request.instance_id)
        tree = [request.instance_id]
        for instance_id in tree:  # grows while iterating: breadth-first over descendants
            tree.extend(child for child in self._children(instance_id) if child not in tree)
        if not request.force:
            for instance_id in tree:
                record = self._record(instance_id)
                if record is not None and not record.state.is_terminal:
                    raise InstanceStillRunningError(instance_id)
        executions = events = messages = 0
        for instance_id in tree:
            instance = self._instances.pop(instance_id, None)
            if instance is not None:
                executions += len(instance.executions)
                events += sum(len(e.events) for e in instance.executions.values())
            for row in self._queue.of(instance_id):
                self._queue.remove(row)
                messages += 1
            for work in self._work.rows():
                if work.task.instance_id == instance_id:
                    self._work.remove(work)
                    messages += 1
            self._release_turn_lock(instance_id)
        return DeleteResult(
            instances_deleted=len(tree),
            executions_deleted=executions,
            events_deleted=events,
            messages_deleted=messages,
        )

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(request.instance_id)
        if instance is None:
            if self._pending_start(request.instance_id) is not None:
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

    async def queue_depths(self) -> QueueDepths:
        await anyio.lowlevel.checkpoint()
        now = self._clock.now_ms()
        orchestrator = timers = worker = locked = 0
        for row in self._queue.rows():
            if self._row_locked(row, now):
                locked += 1
            elif row.visible_at_ms > now:
                timers += 1
            else:
                orchestrator += 1
        for work in self._work.rows():
            if work.is_locked(now):
                locked += 1
            elif work.visible_at_ms <= now:
                worker += 1
        return QueueDepths(orchestrator=orchestrator, timers=timers, worker=worker, locked=locked)

    # -- internals: orchestrator queue ----------------------------------------------------------

    def _enqueue(
        self, message: AnyOrchestratorMessage, visible_at_ms: int | None, now: int
    ) -> None:
        row = OrchestratorRow(
            seq=next(self._seq),
            instance_id=message.instance_id,
            message=message,
            visible_at_ms=now if visible_at_ms is None else visible_at_ms,
            enqueued_at_ms=now,
        )
        self._queue.add(row)

    def _pending_start(self, instance_id: str) -> OrchestratorRow | None:
        if instance_id in self._instances:
            return None
        for row in self._queue.of(instance_id):
            if isinstance(row.message, StartOrchestrationMessage):
                return row
        return None

    def _pending_starts(self) -> Iterable[OrchestratorRow]:
        for instance_id in self._queue.instance_ids():
            row = self._pending_start(instance_id)
            if row is not None:
                yield row

    def _record(self, instance_id: str) -> InstanceRecord | None:
        instance = self._instances.get(instance_id)
        if instance is not None:
            return instance.record()
        start_row = self._pending_start(instance_id)
        return None if start_row is None else pending_record(start_row)

    def _children(self, instance_id: str) -> list[str]:
        children = [
            row.instance_id
            for row in self._instances.values()
            if row.parent_instance_id == instance_id
        ]
        children.extend(
            row.instance_id
            for row in self._pending_starts()
            if pending_record(row).parent_instance_id == instance_id
        )
        return children

    def _row_locked(self, row: OrchestratorRow, now: int) -> bool:
        lock = self._locks.get(row.instance_id)
        return (
            row.lock_token is not None
            and lock is not None
            and lock.token == row.lock_token
            and lock.locked_until_ms > now
        )

    def _fetch_turn_nowait(
        self, request: FetchTurnRequest, now: int
    ) -> OrchestrationWorkItem | None:
        with contextlib.closing(self._queue.instances_in_arrival_order(now)) as candidates:
            return self._lock_first(candidates, request, now)

    def _lock_first(
        self, candidates: Iterator[str], request: FetchTurnRequest, now: int
    ) -> OrchestrationWorkItem | None:
        for instance_id in candidates:
            lock = self._locks.get(instance_id)
            if lock is not None and lock.locked_until_ms > now:
                continue
            batch = arrival_order(r for r in self._queue.of(instance_id) if r.visible_at_ms <= now)
            instance = self._instances.get(instance_id)
            if instance is None and not any(
                isinstance(row.message, StartOrchestrationMessage) for row in batch
            ):
                # Never started: keep what a later start may still want, drop the rest, and
                # move on so these messages cannot starve other instances.
                for row in batch:
                    if isinstance(row.message, _ORPHAN_DROPPABLE):
                        self._queue.remove(row)
                continue
            self._release_turn_lock(instance_id)
            token = uuid.uuid4().hex
            self._locks[instance_id] = TurnLock(
                token=token,
                locked_until_ms=now + to_ms(request.lock_timeout),
                owner_id=request.owner_id,
            )
            self._lock_instances[token] = instance_id
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

    def _live_turn_lock(self, op: str, token: str, now: int) -> str:
        instance_id = self._lock_instances.get(token)
        lock = self._locks.get(instance_id) if instance_id is not None else None
        if instance_id is None or lock is None or lock.token != token:
            raise LockLostError(op, "lock token is unknown, released or taken over")
        if lock.locked_until_ms <= now:
            raise LockLostError(op, "instance lock expired")
        return instance_id

    def _release_turn_lock(self, instance_id: str) -> None:
        lock = self._locks.pop(instance_id, None)
        if lock is not None:
            self._lock_instances.pop(lock.token, None)

    def _validate_commit(self, op: str, changes: TurnChanges, instance: InstanceRow | None) -> None:
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

    def _apply_queue_writes(self, changes: TurnChanges, now: int) -> None:
        """Steps 6-7 of ``commit_turn``: insert then withdraw activities, send messages."""
        for task in changes.activity_tasks:
            self._work.add(WorkRow(seq=next(self._seq), task=task, visible_at_ms=now))
        withdrawn = {
            (changes.instance_id, changes.execution_id, seq) for seq in changes.cancelled_activities
        }
        if withdrawn:
            for work in self._work.rows():
                task = work.task
                if (task.instance_id, task.execution_id, task.seq) in withdrawn:
                    self._work.remove(work)
        for message in changes.orchestrator_messages:
            self._enqueue(message.message, message.visible_at_ms, now)

    def _turn_due(self, now: int) -> int | None:
        """The next time a turn fetch could find work without any write happening."""
        times = [row.visible_at_ms for row in self._queue.rows()]
        times.extend(lock.locked_until_ms for lock in self._locks.values())
        future = [t for t in times if t > now]
        return min(future) if future else None

    # -- internals: worker queue ----------------------------------------------------------------

    def _fetch_activity_nowait(
        self, request: FetchActivityRequest, now: int
    ) -> ActivityWorkItem | None:
        owner = request.session_owner
        for row in self._work.rows():
            if row.visible_at_ms > now or row.is_locked(now):
                continue
            if not request.tag_filter.accepts(row.task.tag):
                continue
            session_id = row.task.session
            if session_id is not None:
                if owner is None:
                    continue
                session = self._sessions.get(session_id)
                if session is not None and session.is_live(now) and session.owner_id != owner:
                    continue
                locked_until = now + to_ms(request.session_lock_timeout)
                if session is not None and session.is_live(now):
                    locked_until = max(locked_until, session.locked_until_ms)
                self._sessions[session_id] = SessionRow(
                    owner_id=owner, locked_until_ms=locked_until, last_activity_ms=now
                )
            token = uuid.uuid4().hex
            self._work.lock(row, token, now + to_ms(request.lock_timeout))
            return ActivityWorkItem(
                lock_token=token, task=row.task, delivery_count=row.delivery_count
            )
        return None

    def _live_work_row(self, op: str, token: str, now: int) -> WorkRow:
        row = self._work.by_token(token)
        if row is None or row.lock_token != token:
            raise LockLostError(op, "work item was withdrawn, completed or taken over")
        if row.locked_until_ms <= now:
            raise LockLostError(op, "work item lock expired")
        return row

    def _touch_session(self, row: WorkRow, now: int) -> None:
        if row.task.session is None:
            return
        session = self._sessions.get(row.task.session)
        if session is not None and session.is_live(now):
            session.last_activity_ms = now

    def _activity_due(self, now: int) -> int | None:
        times: list[int] = []
        for row in self._work.rows():
            times.append(row.visible_at_ms)
            if row.lock_token is not None:
                times.append(row.locked_until_ms)
        times.extend(session.locked_until_ms for session in self._sessions.values())
        future = [t for t in times if t > now]
        return min(future) if future else None

    # -- internals: polling ---------------------------------------------------------------------

    @staticmethod
    def _take_all(take_one: Callable[[], Item | None], request: FetchRequest) -> list[Item]:
        """Lock items one by one, up to ``request.max_items``, until none is left."""
        items: list[Item] = []
        while len(items) < max(1, request.max_items):
            item = take_one()
            if item is None:
                break
            items.append(item)
        return items

    @staticmethod
    def _wait_s(now: int, deadline: int, due: Callable[[int], int | None]) -> float:
        """Seconds to wait: until the deadline, or earlier when work falls due by itself."""
        next_due = due(now)
        until = deadline if next_due is None else min(deadline, next_due)
        return max(until - now, 1) / 1000


def _failure_of(apply: Callable[[C], None], commit: C) -> ProviderError | None:
    """Apply one commit of a batch: its error, or None once applied."""
    try:
        apply(commit)
    except ProviderError as exc:
        return exc
    return None
