"""The orchestration dispatcher: fetch a locked batch, run the engine, commit the turn."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

import anyio

from .._clock import Clock
from .._engine import (
    Defer,
    DeferReason,
    Execution,
    TurnDecision,
    TurnInput,
    corrupt_history_error,
    poison_error,
    run_turn,
    terminate,
)
from .._errors import LockLostError, ProviderError
from .._messages import AnyOrchestratorMessage
from .._records import TurnChanges
from .._registry import Registry
from .._status import ExecutionStatus
from .._watch import InstanceWatch
from ..providers import (
    AbandonRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    Provider,
    TurnCommit,
)
from . import _delays as delays
from ._batching import BatchCommitter
from ._handoff import HandOffs
from ._leases import TurnLeases
from ._options import RuntimeOptions
from ._polling import FetchScopes, IdleBackoff, run_fetch_loop
from ._pool import WorkPool
from ._requests import sized
from ._telemetry import ObservedTurn, Telemetry, TurnOutcome, TurnResult, committed_outcome

log = logging.getLogger("duro.runtime.orchestrator")

_ENDINGS = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED})
"""Turn outcomes that end the instance (continue-as-new goes on as a new execution)."""


IDLE_HORIZON_MS = 60_000
"""An execution none of whose own work completes within this is idle (see ExecutionCache)."""


class ExecutionCache:
    """Live executions between turns (LRU). Entries are validated against fetched history.

    ``index`` tells the store which histories are held here, so a fetch can skip loading
    them: with it, a turn's cost does not grow with the length of the history.

    An *idle* execution waits only for an event, a message or a distant timer: it may wait
    for days, and waking it by replay costs one history read. At most ``idle_capacity`` of
    them are kept (the least recently used go first), so memory does not grow with the
    number of waiting instances; ``capacity`` bounds all entries together.
    """

    def __init__(self, capacity: int, idle_capacity: int) -> None:
        self._capacity = capacity
        self._idle_capacity = min(idle_capacity, capacity)
        self._busy: OrderedDict[str, Execution] = OrderedDict()
        self._idle: OrderedDict[str, Execution] = OrderedDict()
        self._committing: dict[str, tuple[str, Execution]] = {}
        """Executions whose turn is committing, with the turn's lock token (see ``hold``);
        bounded by the turns in flight."""
        self.index: dict[str, tuple[int, int]] = {}

    def peek(self, instance_id: str) -> Execution | None:
        """The cached execution, left in place (and in its LRU position)."""
        found = self._busy.get(instance_id)
        if found is None:
            found = self._idle.get(instance_id)
        if found is None and instance_id in self._committing:
            found = self._committing[instance_id][1]
        return found

    def take(self, instance_id: str) -> Execution | None:
        self.index.pop(instance_id, None)
        found = self._busy.pop(instance_id, None)
        if found is None:
            found = self._idle.pop(instance_id, None)
        committing = self._committing.pop(instance_id, None)
        return found if committing is None else committing[1]

    def hold(self, instance_id: str, lock_token: str, execution: Execution) -> None:
        """Keep ``execution`` while its turn (``lock_token``) commits, indexed as committed.

        The store may run the next fetch in the same round trip as the commit (the turn that
        an activity report makes due, say), before the turn's own task resumes: that fetch
        then skips loading the history (it matches the index only once the commit landed),
        and the next turn takes the execution from here. Then ``settle`` finds it gone."""
        self._committing[instance_id] = (lock_token, execution)
        self.index[instance_id] = (execution.execution_id, len(execution.history))

    def settle(self, instance_id: str, lock_token: str, *, committed: bool, now_ms: int) -> None:
        """The commit of turn ``lock_token`` returned: cache its execution, or drop it if the
        turn did not commit (it ran ahead of stored history). Nothing if the next turn took
        it."""
        held = self._committing.get(instance_id)
        if held is None or held[0] != lock_token:
            return
        del self._committing[instance_id]
        execution = held[1]
        if committed:
            idle = not execution.expects_completion_by(now_ms + IDLE_HORIZON_MS)
            self.put(instance_id, execution, idle=idle)
        else:
            self.index.pop(instance_id, None)
            execution.discard()

    def put(self, instance_id: str, execution: Execution, *, idle: bool) -> None:
        self.take(instance_id)
        if self._capacity <= 0 or (idle and self._idle_capacity <= 0):
            execution.discard()
            return
        (self._idle if idle else self._busy)[instance_id] = execution
        self.index[instance_id] = (execution.execution_id, len(execution.history))
        while len(self._idle) > self._idle_capacity:
            self._evict(self._idle)
        while len(self._busy) + len(self._idle) > self._capacity:
            self._evict(self._idle or self._busy)

    def _evict(self, entries: OrderedDict[str, Execution]) -> None:
        evicted_id, evicted = entries.popitem(last=False)
        self.index.pop(evicted_id, None)
        evicted.discard()

    def __len__(self) -> int:
        return len(self._busy) + len(self._idle)

    @property
    def idle(self) -> int:
        """How many of the entries are idle executions."""
        return len(self._idle)


CommitTurns = Callable[[Sequence[TurnCommit]], Awaitable[list[ProviderError | None]]]
OnWithdrawn = Callable[[str, int, Sequence[int]], None]


class OrchestrationDispatcher:
    """Fetches locked batches, runs each through the engine and commits the turn."""

    def __init__(
        self,
        *,
        provider: Provider,
        registry: Registry,
        options: RuntimeOptions,
        clock: Clock,
        cache: ExecutionCache,
        pool: WorkPool[OrchestrationWorkItem],
        request: FetchTurnRequest,
        handoffs: HandOffs[str],
        commit_turns: CommitTurns,
        on_withdrawn: OnWithdrawn,
        watch: InstanceWatch,
        telemetry: Telemetry,
    ) -> None:
        """``request`` is the fetch template (its ``max_items`` is the batch limit; it skips
        the instances in ``handoffs``, whose code this worker lacks);
        ``commit_turns`` applies a batch of commits (see ``HandOver``); ``on_withdrawn(instance,
        execution, seqs)`` tells in-process activities that a commit withdrew them; ``watch``
        hears of every commit (client waits in this process wake at once)."""
        self._provider = provider
        self._registry = registry
        self._options = options
        self._clock = clock
        self.cache = cache
        self.pool = pool
        self._request = request
        self._handoffs = handoffs
        self._on_withdrawn = on_withdrawn
        self._watch = watch
        self._telemetry = telemetry
        self._committer = BatchCommitter[TurnCommit](
            commit_turns, options.commit_retries, "commit_turn"
        )
        self._fetch_scopes = FetchScopes()
        self._leases = TurnLeases(provider, options)
        self.turns_committed = 0
        self.in_flight = 0

    async def run(self, stopping: anyio.Event) -> None:
        """Dispatch turns until ``stopping`` is set; returns when in-flight turns are done."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._committer.run)
            tg.start_soon(self._leases.maintain)
            await run_fetch_loop(
                fetch=lambda n, wait: self._provider.fetch_turns(
                    sized(self._request, n, wait=wait)
                ),
                pool=self.pool,
                handle=self._handle,
                release_unstarted=lambda item: self._abandon(
                    item, delays.UNSTARTED, undo_delivery_count=True
                ),
                stopping=stopping,
                backoff=IdleBackoff(self._options),
                scopes=self._fetch_scopes,
                what="a turn",
                batch_limit=self._request.max_items,
            )
            tg.cancel_scope.cancel()

    async def _handle(self, item: OrchestrationWorkItem) -> None:
        self.in_flight += 1
        self._leases.add(item.lock_token)
        try:
            # A started turn always finishes: shutdown never leaves a half-processed batch.
            with anyio.CancelScope(shield=True):
                try:
                    await self._process(item)
                except Exception:  # a bug below us must not stop the dispatcher
                    log.exception("the turn of %s failed unexpectedly", item.instance_id)
                    await self._abandon(item, delays.ENGINE_CRASHED)
        finally:
            self._leases.remove(item.lock_token)
            self.in_flight -= 1

    def stop_fetching(self) -> None:
        """Interrupt idle fetches so slots notice shutdown at once."""
        self._fetch_scopes.cancel_all()

    def stop_retrying(self) -> None:
        """Shutdown's grace period is over: turns whose commits the store keeps refusing give
        up (they are replayed later), so shutdown returns."""
        self._committer.stop_retrying()

    async def _process(self, item: OrchestrationWorkItem) -> None:
        tracer = self._telemetry.tracing.tracer()
        meters = self._telemetry.metrics.instruments()
        if tracer is None and meters is None:
            await self._turn(item, item.messages, None)
            return
        observed = ObservedTurn(item, self.cache.peek(item.instance_id))
        started = time.perf_counter()
        with observed.traced(tracer):
            result = await self._turn(item, observed.messages, observed)
            now_ms = self._clock.now_ms()
            observed.finish(tracer, result, now_ms)
        if meters is not None:
            poison = item.delivery_count > self._options.max_deliveries
            observed.record(meters, result, time.perf_counter() - started, now_ms, poison=poison)

    async def _turn(
        self,
        item: OrchestrationWorkItem,
        messages: list[AnyOrchestratorMessage],
        observed: ObservedTurn | None,
    ) -> TurnResult:
        """Decide and commit one turn; ``observed`` stamps the work it sends with its span."""
        try:
            decision = self._decide(item, messages)
        except Exception as exc:  # an engine bug must not kill the slot; retry later
            log.exception("turn of %s crashed the engine; abandoning", item.instance_id)
            await self._abandon(item, delays.ENGINE_CRASHED)
            return TurnResult(TurnOutcome.ABANDONED, error=exc)
        if isinstance(decision, Defer):
            if decision.reason is DeferReason.NOT_REGISTERED:
                await self._hand_off(item, decision.detail)
                return TurnResult(TurnOutcome.DEFERRED)
            log.info("deferring the turn of %s: %s", item.instance_id, decision.detail)
            await self._abandon(item, delays.DEFERRED[decision.reason], undo_delivery_count=True)
            return TurnResult(TurnOutcome.DEFERRED)
        changes = decision.changes
        if observed is not None:
            observed.stamp(changes)
        execution = decision.execution
        if execution is not None:
            self.cache.hold(item.instance_id, item.lock_token, execution)
        failure = await self._committer.submit_until_applied(
            lambda: TurnCommit(lock_token=item.lock_token, changes=changes),
            f"committing the turn of {item.instance_id}",
        )
        if execution is not None:
            now_ms = self._clock.now_ms()
            self.cache.settle(
                item.instance_id, item.lock_token, committed=failure is None, now_ms=now_ms
            )
        if isinstance(failure, LockLostError):
            log.info("lock on %s was lost before commit; the turn is void", item.instance_id)
            return TurnResult(TurnOutcome.LOCK_LOST, decision)
        if failure is not None:
            log.error("committing the turn of %s failed: %s", item.instance_id, failure)
            await self._abandon(item, delays.COMMIT_FAILED)
            return TurnResult(TurnOutcome.ABANDONED, decision, failure)
        self.turns_committed += 1
        self._watch.notify(item.instance_id, ended=changes.execution_status in _ENDINGS)
        if changes.cancelled_activities:
            self._on_withdrawn(item.instance_id, changes.execution_id, changes.cancelled_activities)
        return TurnResult(_outcome(changes, observed), decision)

    def _looks(self, item: OrchestrationWorkItem) -> int:
        """Deliveries of ``item`` so far, counting the ones this worker handed to others."""
        return max(item.delivery_count, self._handoffs.look(item.instance_id))

    async def _hand_off(self, item: OrchestrationWorkItem, why: str) -> None:
        """Leave a turn whose code this worker lacks to workers that have it (see
        ``_handoff``); an instance no worker can run fails on its last look (the engine says
        why)."""
        looks = self._looks(item)
        put_back = self._handoffs.leave(item.instance_id, looks, item.delivery_count)
        log.warning(
            "leaving the turn of %s for another worker: %s (look %d of %d, here again in "
            "%.0f s)", item.instance_id, why, looks, self._options.max_deliveries,
            put_back.here_again_in,
        )  # fmt: skip
        await self._abandon(item, put_back.delay, undo_delivery_count=put_back.undo_delivery_count)

    def _decide(
        self, item: OrchestrationWorkItem, messages: list[AnyOrchestratorMessage]
    ) -> TurnDecision:
        record = item.instance
        cached = self.cache.take(item.instance_id)
        history = item.history
        if item.history_omitted:
            if cached is None or cached.execution_id != item.execution_id:
                return Defer(
                    DeferReason.CACHE_EVICTED, "the cached execution was evicted during the fetch"
                )
            history = cached.history
        elif cached is not None and (
            cached.execution_id != item.execution_id or len(cached.history) != len(history)
        ):
            # Another process moved this instance on: rebuild from history.
            cached.discard()
            cached = None
        work = TurnInput(
            instance_id=item.instance_id,
            execution_id=item.execution_id,
            execution_status=record.execution_status if record else None,
            history=history,
            messages=messages,
            now_ms=self._clock.now_ms(),
            kv_snapshot=item.kv_snapshot,
            record=record,
            final_delivery=self._looks(item) >= self._options.max_deliveries,
            max_history_events=self._options.max_history_events,
        )
        if item.history_error is not None:
            problem = f"stored history cannot be decoded: {item.history_error}"
            return terminate(work, corrupt_history_error(problem))
        limit = self._options.max_deliveries
        if item.delivery_count > limit:
            return terminate(
                work,
                poison_error(
                    f"a message for this instance was delivered {item.delivery_count} times "
                    f"(limit {limit}); the turn keeps failing"
                ),
            )
        return run_turn(self._registry, work, cached)

    async def _abandon(
        self, item: OrchestrationWorkItem, delay: float, *, undo_delivery_count: bool = False
    ) -> None:
        try:
            await self._provider.abandon_turn(
                AbandonRequest(
                    lock_token=item.lock_token, delay=delay, undo_delivery_count=undo_delivery_count
                )
            )
        except ProviderError as exc:  # the lock will expire on its own
            log.warning("abandoning the turn of %s failed: %s", item.instance_id, exc)


def _outcome(changes: TurnChanges, observed: ObservedTurn | None) -> TurnOutcome:
    # Only worth working out for telemetry.
    return TurnOutcome.RUNNING if observed is None else committed_outcome(changes)
