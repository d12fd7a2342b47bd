"""``InstrumentedProvider``: store metrics for any provider, by wrapping it.

No provider measures itself: the runtime wraps the store it is given, and anyone else (a
client-only process) can wrap theirs. While no meter provider is installed a call costs one
provider lookup more than the bare store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from opentelemetry.metrics import MeterProvider

from .._errors import ProviderError
from .._history import HistoryEvent
from .._messages import StartOrchestrationMessage
from .._telemetry._metrics import Instruments, Metrics
from ._interface import Provider
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
    InstanceNotice,
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

T = TypeVar("T")
Results = list[ProviderError | None]


class InstrumentedProvider(Provider):
    """Wraps ``inner`` and measures every call: ``duro.store.operation.duration`` (by
    operation) and ``duro.store.errors`` (by operation, retryable, error type), including the
    per-commit errors a batch call returns.

    Fetches that may long-poll (``poll_timeout`` > 0) are not timed: their time is mostly
    waiting for work. Everything else, including the ``fetches_with_commits`` flag and the
    store's ``name``, is the wrapped store's. ``meter_provider`` defaults to the global one.
    """

    def __init__(self, inner: Provider, *, meter_provider: MeterProvider | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        # Per instance: the wrapper hands work over exactly when the wrapped store would.
        self.__dict__["fetches_with_commits"] = inner.fetches_with_commits
        self._metrics = Metrics(meter_provider)

    def __repr__(self) -> str:
        return f"InstrumentedProvider({self.inner!r})"

    async def _measure(
        self, meters: Instruments, operation: str, call: Awaitable[T], *, timed: bool = True
    ) -> T:
        started = time.perf_counter()
        try:
            result = await call
        except ProviderError as exc:
            _count_error(meters, operation, exc)
            raise
        finally:
            if timed:
                meters.store_duration.record(
                    time.perf_counter() - started,
                    {"duro.store.operation": operation, "duro.store.name": self.name},
                )
        return result

    async def _batch(
        self, meters: Instruments, operation: str, call: Awaitable[Results]
    ) -> Results:
        results = await self._measure(meters, operation, call)
        _count_batch_errors(meters, operation, results)
        return results

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.open()
        return await self._measure(meters, "open", self.inner.open())

    async def close(self) -> None:
        await self.inner.close()

    async def runtime_started(self, worker_id: str) -> None:
        await self.inner.runtime_started(worker_id)

    async def runtime_stopped(self, worker_id: str) -> None:
        await self.inner.runtime_stopped(worker_id)

    async def maintain(self) -> float | None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.maintain()
        return await self._measure(meters, "maintain", self.inner.maintain())

    async def instance_notices(self) -> list[InstanceNotice]:
        return await self.inner.instance_notices()  # a wait: never timed

    # -- client side -----------------------------------------------------------------------------

    async def start_orchestration(self, start: StartOrchestrationMessage) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.start_orchestration(start)
        return await self._measure(
            meters, "start_orchestration", self.inner.start_orchestration(start)
        )

    async def start_instance(self, request: StartRequest) -> StartOutcome:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.start_instance(request)
        return await self._measure(meters, "start_instance", self.inner.start_instance(request))

    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.enqueue_orchestrator_message(message)
        return await self._measure(
            meters, "enqueue_orchestrator_message", self.inner.enqueue_orchestrator_message(message)
        )

    # -- orchestration turns ---------------------------------------------------------------------

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.fetch_turns(request)
        return await self._measure(
            meters,
            "fetch_turns",
            self.inner.fetch_turns(request),
            timed=request.poll_timeout <= 0,
        )

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> Results:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.commit_turns(commits)
        return await self._batch(meters, "commit_turns", self.inner.commit_turns(commits))

    async def commit_turns_and_fetch_activities(
        self, commits: Sequence[TurnCommit], fetch: FetchActivityRequest
    ) -> tuple[Results, list[ActivityWorkItem]]:
        call = self.inner.commit_turns_and_fetch_activities(commits, fetch)
        meters = self._metrics.instruments()
        if meters is None:
            return await call
        results, items = await self._measure(meters, "commit_turns_and_fetch_activities", call)
        _count_batch_errors(meters, "commit_turns_and_fetch_activities", results)
        return results, items

    async def complete_activities_and_fetch_turns(
        self, commits: Sequence[ActivityCommit], fetch: FetchTurnRequest
    ) -> tuple[Results, list[OrchestrationWorkItem]]:
        call = self.inner.complete_activities_and_fetch_turns(commits, fetch)
        meters = self._metrics.instruments()
        if meters is None:
            return await call
        results, items = await self._measure(meters, "complete_activities_and_fetch_turns", call)
        _count_batch_errors(meters, "complete_activities_and_fetch_turns", results)
        return results, items

    async def abandon_turn(self, request: AbandonRequest) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.abandon_turn(request)
        return await self._measure(meters, "abandon_turn", self.inner.abandon_turn(request))

    async def renew_turn_lock(self, request: RenewRequest) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.renew_turn_lock(request)
        return await self._measure(meters, "renew_turn_lock", self.inner.renew_turn_lock(request))

    # -- activity work items ---------------------------------------------------------------------

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.fetch_activities(request)
        return await self._measure(
            meters,
            "fetch_activities",
            self.inner.fetch_activities(request),
            timed=request.poll_timeout <= 0,
        )

    async def complete_activities(self, commits: Sequence[ActivityCommit]) -> Results:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.complete_activities(commits)
        return await self._batch(
            meters, "complete_activities", self.inner.complete_activities(commits)
        )

    async def abandon_activity(self, request: AbandonRequest) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.abandon_activity(request)
        return await self._measure(meters, "abandon_activity", self.inner.abandon_activity(request))

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return await self.inner.renew_activity_lock(request)
        return await self._measure(
            meters, "renew_activity_lock", self.inner.renew_activity_lock(request)
        )

    # -- sessions ----------------------------------------------------------------------------------

    async def renew_sessions(self, request: SessionRenewal) -> int:
        return await self._plain("renew_sessions", self.inner.renew_sessions(request))

    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        return await self._plain(
            "cleanup_orphaned_sessions", self.inner.cleanup_orphaned_sessions(idle_timeout)
        )

    # -- reads and management (not on the hot path) -------------------------------------------

    async def _plain(self, operation: str, call: Awaitable[T]) -> T:
        meters = self._metrics.instruments()
        if meters is None:
            return await call
        return await self._measure(meters, operation, call)

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        return await self._plain("read_instance", self.inner.read_instance(instance_id))

    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        return await self._plain("read_history", self.inner.read_history(instance_id, execution_id))

    async def list_executions(self, instance_id: str) -> list[int]:
        return await self._plain("list_executions", self.inner.list_executions(instance_id))

    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        return await self._plain("read_executions", self.inner.read_executions(instance_id))

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        return await self._plain("get_kv_value", self.inner.get_kv_value(instance_id, key))

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        return await self._plain("get_kv_items", self.inner.get_kv_items(instance_id))

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        return await self._plain("get_kv_snapshot", self.inner.get_kv_snapshot(instance_id))

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        return await self._plain("list_instances", self.inner.list_instances(query))

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        return await self._plain("count_instances", self.inner.count_instances(query))

    async def list_children(self, instance_id: str) -> list[str]:
        return await self._plain("list_children", self.inner.list_children(instance_id))

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        return await self._plain("delete_instance", self.inner.delete_instance(request))

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        return await self._plain("prune_executions", self.inner.prune_executions(request))

    async def queue_depths(self) -> QueueDepths:
        return await self._plain("queue_depths", self.inner.queue_depths())


def _count_error(meters: Instruments, operation: str, error: ProviderError) -> None:
    meters.store_errors.add(
        1,
        {
            "duro.store.operation": operation,
            "duro.store.retryable": error.retryable,
            "error.type": type(error).__name__,
        },
    )


def _count_batch_errors(meters: Instruments, operation: str, results: Results) -> None:
    for error in results:
        if error is not None:
            _count_error(meters, operation, error)
