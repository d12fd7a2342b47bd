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

Layout, as in the SQLite store: this class is the async shell (a checkpoint per call, wake-ups,
long polling); ``_memory_turns`` (orchestrator queue, turn locks, commits),
``_memory_activities`` (worker queue, sessions) and ``_memory_manage`` (reads, management)
hold one synchronous ``*_nowait`` function per operation over the ``MemoryTables`` of
``_memory_state``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import anyio.lowlevel

from .._clock import SYSTEM_CLOCK, Clock
from .._codec import Codec
from .._errors import ProviderError
from .._history import HistoryEvent
from ._boundary import CodecBoundary
from ._interface import Provider
from ._memory_activities import (
    abandon_activity_nowait,
    activity_due,
    cleanup_orphaned_sessions_nowait,
    complete_activity_nowait,
    fetch_activity_nowait,
    renew_activity_lock_nowait,
    renew_sessions_nowait,
)
from ._memory_manage import (
    children_nowait,
    count_instances_nowait,
    delete_instance_nowait,
    kv_items_nowait,
    kv_snapshot_nowait,
    kv_value_nowait,
    list_instances_nowait,
    prune_nowait,
    queue_depths_nowait,
    read_executions_nowait,
    read_history_nowait,
)
from ._memory_state import MemoryTables, to_ms
from ._memory_turns import (
    abandon_turn_nowait,
    commit_turn_nowait,
    enqueue_nowait,
    fetch_turn_nowait,
    renew_turn_lock_nowait,
    start_instance_nowait,
    turn_due,
)
from ._signal import WorkSignal
from ._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    DeleteRequest,
    DeleteResult,
    ExecutionRecord,
    FetchActivityRequest,
    FetchTurnRequest,
    InstanceCountQuery,
    InstanceCounts,
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
    StartOutcome,
    StartRequest,
    TurnCommit,
)

Item = TypeVar("Item", OrchestrationWorkItem, ActivityWorkItem)
FetchRequest = FetchTurnRequest | FetchActivityRequest
C = TypeVar("C", TurnCommit, ActivityCommit)


class InMemoryProvider(Provider):
    """Keeps everything in process memory; for tests, examples and single-process tools.

    Safe for any number of tasks on one event loop. Long-polls: a waiting fetch wakes when a
    write makes work available, or when a timer or lock expiry is due. With ``codec`` (for
    example ``duro.AesGcmCodec``) the tables hold every payload in its encoded form.
    """

    name = "memory"
    fetches_with_commits = True

    def __init__(self, *, clock: Clock | None = None, codec: Codec | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._codec = CodecBoundary(codec)
        self._tables = MemoryTables()
        self._turn_signal = WorkSignal()
        self._activity_signal = WorkSignal()

    def __repr__(self) -> str:
        codec = "" if self._codec.codec is None else f", codec={self._codec.codec!r}"
        return f"InMemoryProvider(clock={self._clock!r}{codec})"

    # -- client side ----------------------------------------------------------------------------

    async def start_instance(self, request: StartRequest) -> StartOutcome:
        request = self._codec.encode_start(request)
        await anyio.lowlevel.checkpoint()
        outcome = start_instance_nowait(self._tables, request, self._clock.now_ms())
        self._turn_signal.notify()
        return outcome

    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        message = self._codec.encode_scheduled(message)
        await anyio.lowlevel.checkpoint()
        enqueue_nowait(self._tables, message.message, message.visible_at_ms, self._clock.now_ms())
        self._turn_signal.notify()

    # -- orchestration turns --------------------------------------------------------------------

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        await anyio.lowlevel.checkpoint()
        deadline = self._clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = self._turn_signal.current()
            now = self._clock.now_ms()
            take_one = partial(fetch_turn_nowait, self._tables, request, now)
            items = _take_all(take_one, request)
            if items or now >= deadline:
                return await self._codec.decode_turns(items, self.abandon_turn)
            due = partial(turn_due, self._tables)
            await WorkSignal.wait(self._clock, event, _wait_s(now, deadline, due))

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[ProviderError | None]:
        commits = self._codec.encode_turn_commits(commits)
        await anyio.lowlevel.checkpoint()
        return [_failure_of(self._commit_turn_nowait, commit) for commit in commits]

    def _commit_turn_nowait(self, commit: TurnCommit) -> None:
        commit_turn_nowait(self._tables, commit, self._clock.now_ms())
        self._turn_signal.notify()
        if commit.changes.activity_tasks:
            self._activity_signal.notify()

    async def abandon_turn(self, request: AbandonRequest) -> None:
        await anyio.lowlevel.checkpoint()
        abandon_turn_nowait(self._tables, request, self._clock.now_ms())
        self._turn_signal.notify()

    async def renew_turn_lock(self, request: RenewRequest) -> None:
        await anyio.lowlevel.checkpoint()
        renew_turn_lock_nowait(self._tables, request, self._clock.now_ms())

    # -- activity work items --------------------------------------------------------------------

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        await anyio.lowlevel.checkpoint()
        deadline = self._clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = self._activity_signal.current()
            now = self._clock.now_ms()
            take_one = partial(fetch_activity_nowait, self._tables, request, now)
            items = _take_all(take_one, request)
            if items or now >= deadline:
                return await self._codec.decode_activities(items, self.abandon_activity)
            due = partial(activity_due, self._tables)
            await WorkSignal.wait(self._clock, event, _wait_s(now, deadline, due))

    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        commits = self._codec.encode_activity_commits(commits)
        await anyio.lowlevel.checkpoint()
        return [_failure_of(self._complete_activity_nowait, commit) for commit in commits]

    def _complete_activity_nowait(self, commit: ActivityCommit) -> None:
        complete_activity_nowait(self._tables, commit, self._clock.now_ms())
        self._activity_signal.notify()
        if commit.result is not None:
            self._turn_signal.notify()

    async def abandon_activity(self, request: AbandonRequest) -> None:
        await anyio.lowlevel.checkpoint()
        abandon_activity_nowait(self._tables, request, self._clock.now_ms())
        self._activity_signal.notify()

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        request = self._codec.encode_renewal(request)
        await anyio.lowlevel.checkpoint()
        renew_activity_lock_nowait(self._tables, request, self._clock.now_ms())

    # -- sessions -------------------------------------------------------------------------------

    async def renew_sessions(self, request: SessionRenewal) -> int:
        await anyio.lowlevel.checkpoint()
        return renew_sessions_nowait(self._tables, request, self._clock.now_ms())

    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        await anyio.lowlevel.checkpoint()
        return cleanup_orphaned_sessions_nowait(self._tables, self._clock.now_ms())

    # -- reads ----------------------------------------------------------------------------------

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        await anyio.lowlevel.checkpoint()
        return self._codec.decode_record(self._tables.record(instance_id))

    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        await anyio.lowlevel.checkpoint()
        history = read_history_nowait(self._tables, instance_id, execution_id)
        return self._codec.decode_history(instance_id, history)

    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        await anyio.lowlevel.checkpoint()
        return read_executions_nowait(self._tables, instance_id)

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        await anyio.lowlevel.checkpoint()
        return self._codec.decode_kv_entry(
            instance_id, kv_value_nowait(self._tables, instance_id, key)
        )

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        await anyio.lowlevel.checkpoint()
        return self._codec.decode_kv(instance_id, kv_items_nowait(self._tables, instance_id))

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        await anyio.lowlevel.checkpoint()
        return self._codec.decode_kv(instance_id, kv_snapshot_nowait(self._tables, instance_id))

    # -- management -----------------------------------------------------------------------------

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        await anyio.lowlevel.checkpoint()
        return self._codec.decode_page(list_instances_nowait(self._tables, query))

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        await anyio.lowlevel.checkpoint()
        return count_instances_nowait(self._tables, query)

    async def list_children(self, instance_id: str) -> list[str]:
        await anyio.lowlevel.checkpoint()
        return children_nowait(self._tables, instance_id)

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        await anyio.lowlevel.checkpoint()
        return delete_instance_nowait(self._tables, request)

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        await anyio.lowlevel.checkpoint()
        return prune_nowait(self._tables, request)

    async def queue_depths(self) -> QueueDepths:
        await anyio.lowlevel.checkpoint()
        return queue_depths_nowait(self._tables, self._clock.now_ms())


def _take_all(take_one: Callable[[], Item | None], request: FetchRequest) -> list[Item]:
    """Lock items one by one, up to ``request.max_items``, until none is left."""
    items: list[Item] = []
    while len(items) < max(1, request.max_items):
        item = take_one()
        if item is None:
            break
        items.append(item)
    return items


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
