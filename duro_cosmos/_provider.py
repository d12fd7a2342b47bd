"""``CosmosProvider``: the duro provider contract on one Azure Cosmos DB (NoSQL) container."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import TypeVar

import httpx
from opentelemetry.metrics import MeterProvider

from duro._clock import SYSTEM_CLOCK, Clock
from duro._codec import Codec
from duro._errors import ProviderError
from duro._history import HistoryEvent
from duro.providers._boundary import CodecBoundary
from duro.providers._interface import Provider
from duro.providers._types import (
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

from ._activities import Activities
from ._context import Context
from ._dispatch import Dispatch
from ._fanout import each_concurrently
from ._manage import Management
from ._outbox import Outbox
from ._rest import CosmosConfig, CosmosError, HttpRetryPolicy, RequestStatistics
from ._store import Store
from ._turns import Turns

C = TypeVar("C", TurnCommit, ActivityCommit)


class CosmosProvider(Provider):
    """Stores instances in one Cosmos DB container, partitioned by instance id.

    ``CosmosProvider(CosmosConfig.from_env())`` does no I/O until first use; it then creates
    the database and container if missing. ``async with`` / :meth:`close` release the HTTP
    pool. ``transport`` replaces httpx's network layer (tests put a Cosmos compatibility layer
    there), ``clock`` is the time locks and timers are measured in (never the server's), and
    ``owner_id`` names this provider among the members that dispatch work (see
    docs/providers/cosmos.md, "Dispatch"). With ``retention`` (seconds or a timedelta), every
    document of a completed or failed instance expires that long after it finished, deleted
    by Cosmos's time to live at no request cost (``delete_instance`` still works at once).
    ``batch_partition_key`` repeats the partition key in every batch operation, which the
    local ``@vercel/cosmosdb-server`` needs when used without the test compat layer.
    ``meter_provider`` receives ``duro.cosmos.requests`` and ``duro.cosmos.request_units``
    (default: OpenTelemetry's global provider). With ``codec`` (for example
    ``duro.AesGcmCodec``) every payload is stored in its encoded form in the documents; ids,
    names, timestamps and the fields queries use stay in clear.
    """

    name = "cosmos"
    fetches_with_commits = True
    """A fetch right after a commit serves the work the commit wrote from the in-process
    index, without a query (see ``_known_work``)."""

    def __init__(
        self,
        config: CosmosConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        retry: HttpRetryPolicy | None = None,
        owner_id: str | None = None,
        retention: float | timedelta | None = None,
        batch_partition_key: bool = False,
        meter_provider: MeterProvider | None = None,
        codec: Codec | None = None,
    ) -> None:
        self._config = config if config is not None else CosmosConfig.from_env()
        self._codec = CodecBoundary(codec)
        retention_s = _seconds(retention)
        store = Store(
            self._config,
            transport=transport,
            retry=retry,
            batch_partition_key=batch_partition_key,
            needs_ttl=retention_s is not None,
            meter_provider=meter_provider,
        )
        self._ctx = Context(
            store=store,
            clock=clock if clock is not None else SYSTEM_CLOCK,
            retention_s=retention_s,
        )
        if owner_id is not None:
            self._ctx.owner_id = owner_id
        self._dispatch = Dispatch(self._ctx)
        self._outbox = Outbox(self._ctx, self._dispatch)
        self._turns = Turns(self._ctx, self._outbox, self._dispatch)
        self._activities = Activities(self._ctx, self._outbox, self._dispatch)
        self._manage = Management(self._ctx, self._turns, self._dispatch.known)

    def __repr__(self) -> str:
        config = self._config
        return (
            f"CosmosProvider(endpoint={config.endpoint!r}, database={config.database!r}, "
            f"container={config.container!r}, owner_id={self._ctx.owner_id!r}"
            + ("" if self._codec.codec is None else f", codec={self._codec.codec!r}")
            + ")"
        )

    @property
    def config(self) -> CosmosConfig:
        """The account, database and container this provider talks to."""
        return self._config

    @property
    def owner_id(self) -> str:
        """This provider's identity among the members that share the dispatch slots."""
        return self._ctx.owner_id

    def statistics(self) -> RequestStatistics:
        """Requests sent so far, by kind (a frozen snapshot of the REST client's counters)."""
        return self._ctx.store.client.statistics()

    def reset_statistics(self) -> None:
        """Start counting requests (``statistics``) from zero."""
        self._ctx.store.client.reset_statistics()

    async def owned_slots(self) -> frozenset[int] | None:
        """The dispatch slots this provider serves now (None: all, it is alone; empty until it
        joins, when a runtime starts or it is first fetched from)."""
        membership = self._dispatch.membership
        await membership.tick()
        return None if membership.alone() else membership.owned()

    async def runtime_started(self, worker_id: str) -> None:
        await self._dispatch.runtime_started()

    async def runtime_stopped(self, worker_id: str) -> None:
        try:
            await self._dispatch.runtime_stopped()
        except CosmosError:
            pass  # the others notice the silence within MEMBER_TTL_S

    async def maintain(self) -> float | None:
        """Heartbeat and keep up with the membership while a runtime runs, also when every
        slot of the runtime is busy and nothing fetches."""
        await self._dispatch.maintain()
        return self._dispatch.membership.next_tick_in()

    async def reconcile_outbox(self) -> int:
        """Deliver every outbox intent left behind now (the fetch loops do this periodically)."""
        return await self._outbox.reconcile(force=True)

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        await self._ctx.store.open()

    async def close(self) -> None:
        try:
            await self._dispatch.membership.leave()
        except CosmosError:
            pass  # the lease expires by itself
        await self._ctx.store.close()

    # -- the contract ---------------------------------------------------------------------------

    # Payloads are encoded on the way in and decoded on the way out here and nowhere else
    # (``CodecBoundary``); the inherited ``..._and_fetch_...`` methods call these, so they
    # are covered without an override.

    async def start_instance(self, request: StartRequest) -> StartOutcome:
        return await self._turns.start(self._codec.encode_start(request))

    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        await self._turns.enqueue(self._codec.encode_scheduled(message))

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        items = await self._turns.fetch(request, request.max_items)
        return await self._codec.decode_turns(items, self.abandon_turn)

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[ProviderError | None]:
        commits = self._codec.encode_turn_commits(commits)
        # One partition per instance: turns of different instances share no transaction.
        return await each_concurrently(partial(_failure_of, self._turns.commit), commits)

    async def abandon_turn(self, request: AbandonRequest) -> None:
        await self._turns.abandon(request)

    async def renew_turn_lock(self, request: RenewRequest) -> None:
        await self._turns.renew(request)

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        items = await self._activities.fetch(request, request.max_items)
        return await self._codec.decode_activities(items, self.abandon_activity)

    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        commits = self._codec.encode_activity_commits(commits)
        return await each_concurrently(partial(_failure_of, self._activities.complete), commits)

    async def abandon_activity(self, request: AbandonRequest) -> None:
        await self._activities.abandon(request)

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        await self._activities.renew(self._codec.encode_renewal(request))

    async def renew_sessions(self, request: SessionRenewal) -> int:
        return await self._activities.renew_sessions(request)

    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        return await self._activities.cleanup_sessions()

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        return self._codec.decode_record(await self._manage.read_instance(instance_id))

    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        history = await self._manage.read_history(instance_id, execution_id)
        return self._codec.decode_history(instance_id, history)

    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        return await self._manage.read_executions(instance_id)

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        entry = await self._manage.get_kv_value(instance_id, key)
        return self._codec.decode_kv_entry(instance_id, entry)

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        return self._codec.decode_kv(instance_id, await self._manage.get_kv_items(instance_id))

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        snapshot = await self._manage.get_kv_snapshot(instance_id)
        return self._codec.decode_kv(instance_id, snapshot)

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        return self._codec.decode_page(await self._manage.list_instances(query))

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        return await self._manage.count_instances(query)

    async def list_children(self, instance_id: str) -> list[str]:
        return await self._manage.list_children(instance_id)

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        return await self._manage.delete_instance(request)

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        return await self._manage.prune_executions(request)

    async def queue_depths(self) -> QueueDepths:
        return await self._manage.queue_depths()


async def _failure_of(apply: Callable[[C], Awaitable[None]], commit: C) -> ProviderError | None:
    """Apply one commit of a batch: its error, or None once applied."""
    try:
        await apply(commit)
    except ProviderError as exc:
        return exc
    return None


def _seconds(retention: float | timedelta | None) -> int | None:
    if retention is None:
        return None
    seconds = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
    if not seconds >= 1:  # also refuses NaN
        raise ValueError(f"retention must be at least one second, got {retention!r}")
    return math.ceil(seconds)
