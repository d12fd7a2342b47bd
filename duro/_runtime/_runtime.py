"""``Runtime``: runs orchestration turns and activities against one store, in this process."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskStatus
from opentelemetry.metrics import MeterProvider

from .._client import Client
from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ProviderError, StoreLostError
from .._registry import Registry
from .._telemetry import Metrics, Tracing, add_gauge_source, remove_gauge_source
from .._watch import watch_for
from ..providers import (
    ActivityWorkItem,
    InstrumentedProvider,
    OrchestrationWorkItem,
    Provider,
    SessionRenewal,
)
from ._gc import tuned_gc
from ._handoff import HandOffs
from ._handover import HandOver
from ._loop_watch import watch_event_loop
from ._options import RuntimeOptions
from ._orchestrator import ExecutionCache, OrchestrationDispatcher
from ._pool import WorkPool
from ._requests import activity_fetch_request, turn_fetch_request
from ._telemetry import Telemetry
from ._worker import ActivityWorker

log = logging.getLogger("duro.runtime")


class Runtime:
    """Dispatchers and the activity worker pool for one store.

    ``async with Runtime(store, registry):`` starts them; leaving the block shuts down
    gracefully: no new work is fetched, in-flight turns and activities get
    ``options.shutdown_grace_period`` seconds to finish, then activities are cancelled.
    Alternatively run it in a task group of your own: ``tg.start_soon(runtime.run)``, and
    ``await runtime.shutdown()`` to stop it. Several runtimes (in one process or many) may
    share one store.

    The store is wrapped in an ``InstrumentedProvider`` (``duro.store.*`` metrics); spans and
    metrics go to ``options.tracer_provider`` / ``options.meter_provider`` (default: the
    global ones, see docs/operations.md).
    """

    def __init__(
        self,
        store: Provider,
        registry: Registry,
        options: RuntimeOptions | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.options = options = options or RuntimeOptions()
        self.clock = clock = clock or SYSTEM_CLOCK
        self.client = Client(store, tracer_provider=options.tracer_provider)
        self._metrics = Metrics(options.meter_provider)
        telemetry = Telemetry(Tracing(options.tracer_provider), self._metrics)
        # Everything the runtime does to the store goes through the wrapper; ``self.store``
        # stays the caller's object (client waits in this process are keyed on it).
        self._store = measured = InstrumentedProvider(store, meter_provider=options.meter_provider)
        cache = ExecutionCache(options.execution_cache_size, options.idle_execution_cache_size)
        turn_handoffs = HandOffs[str](clock)
        activity_handoffs = HandOffs[tuple[str, int, int]](clock)
        turn_request = turn_fetch_request(options, cache.index, turn_handoffs)
        activity_request = activity_fetch_request(options, activity_handoffs)
        hand_over = store.fetches_with_commits
        turn_pool = WorkPool[OrchestrationWorkItem](
            options.orchestration_concurrency, receives_hand_overs=hand_over
        )
        activity_pool = WorkPool[ActivityWorkItem](
            options.activity_concurrency, receives_hand_overs=hand_over
        )
        commits = HandOver(
            measured,
            turns=turn_pool,
            activities=activity_pool,
            turn_request=turn_request,
            activity_request=activity_request,
        )
        self._worker = ActivityWorker(
            provider=measured,
            registry=registry,
            options=options,
            client=self.client,
            pool=activity_pool,
            request=activity_request,
            handoffs=activity_handoffs,
            complete_activities=commits.complete_activities,
            clock=clock,
            telemetry=telemetry,
        )
        self._orchestrator = OrchestrationDispatcher(
            provider=measured,
            registry=registry,
            options=options,
            clock=clock,
            cache=cache,
            pool=turn_pool,
            request=turn_request,
            handoffs=turn_handoffs,
            commit_turns=commits.commit_turns,
            on_withdrawn=self._worker.cancel_withdrawn,
            watch=watch_for(store),
            telemetry=telemetry,
        )
        self._running = False
        self._grace = options.shutdown_grace_period
        # Events are made on first use: they need a running event loop, construction does not.
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._gauges = _Gauges(self)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until :meth:`shutdown`, then drain gracefully and return.

        With ``await task_group.start(runtime.run)`` the call returns once dispatching has
        begun. A runtime runs once. If the store is lost (``StoreLostError``: its database
        file was removed or replaced) the runtime stops and this raises it.
        """
        if self._running:
            raise RuntimeError("runtime already started")
        self._running = True
        options = self.options
        worker_id = options.worker_id
        store = self._store
        try:
            await store.open()
            await store.runtime_started(worker_id)
            stopping = anyio.Event()
            add_gauge_source(self._gauges)
            with tuned_gc() if options.tune_gc else contextlib.nullcontext():
                async with anyio.create_task_group() as tg:
                    if options.orchestration_concurrency:
                        tg.start_soon(self._orchestrator.run, stopping)
                    if options.activity_concurrency:
                        tg.start_soon(self._worker.run, stopping)
                    if options.activity_concurrency and options.max_sessions > 0:
                        tg.start_soon(self._maintain_sessions, stopping)
                    tg.start_soon(self._maintain_store, stopping)
                    tg.start_soon(watch_event_loop, stopping)
                    if options.queue_depth_interval > 0:
                        tg.start_soon(self._sample_queue_depths, stopping)
                    log.info(
                        "runtime %s started on the %s store (%d turns and %d activities at once)",
                        worker_id,
                        store.name,
                        options.orchestration_concurrency,
                        options.activity_concurrency,
                    )
                    task_status.started()
                    await self._stop_event().wait()
                    await self._drain(stopping)
                    tg.cancel_scope.cancel()
        except* StoreLostError as lost:
            error: BaseException = lost
            while isinstance(error, BaseExceptionGroup):  # nested task groups nest groups
                error = error.exceptions[0]
            log.critical("the runtime stopped: %s", error)
            raise error from None
        finally:
            remove_gauge_source(self._gauges)
            try:
                with anyio.CancelScope(shield=True):
                    await store.runtime_stopped(worker_id)
            except ProviderError as exc:
                log.warning("telling the store that runtime %s stopped failed: %s", worker_id, exc)
            self._stopped_event().set()
            log.info(
                "runtime %s stopped (%d turns committed, %d activities completed)",
                worker_id,
                self.turns_committed,
                self.activities_completed,
            )

    async def _drain(self, stopping: anyio.Event) -> None:
        """Stop fetching, let in-flight work finish within the grace period, then cancel."""
        stopping.set()
        self._orchestrator.stop_fetching()
        self._worker.stop_fetching()
        with anyio.move_on_after(self._grace):
            while self._orchestrator.in_flight or self._worker.in_flight:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # shutdown only: a short poll beats per-item events
        self._worker.cancel_all("the runtime is shutting down")
        self._orchestrator.stop_retrying()

    async def start(self) -> None:
        """Start dispatching in a task group this runtime owns (``async with`` calls this);
        :meth:`shutdown` must then be awaited by the same task."""
        if self._running:
            raise RuntimeError("runtime already started")
        stack = contextlib.AsyncExitStack()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        try:
            await task_group.start(self.run)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop fetching, let in-flight work finish within the grace period, then cancel.

        Returns once the runtime has stopped (at once if it never started)."""
        if not self._running:
            return
        if grace_period is not None:
            self._grace = grace_period
        self._stop_event().set()
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            await stack.aclose()
        else:
            await self._stopped_event().wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- internals ---------------------------------------------------------------------------

    def _stop_event(self) -> anyio.Event:
        if self._stop is None:
            self._stop = anyio.Event()
        return self._stop

    def _stopped_event(self) -> anyio.Event:
        if self._stopped is None:
            self._stopped = anyio.Event()
        return self._stopped

    async def _maintain_store(self, stopping: anyio.Event) -> None:
        """Keep calling the store's upkeep (real time: it is about liveness, not the clock)."""
        while not stopping.is_set():
            try:
                delay = await self._store.maintain()
            except ProviderError as exc:
                log.warning("store upkeep failed: %s", exc)
                delay = 1.0
            if delay is None:
                return
            with anyio.move_on_after(delay):
                await stopping.wait()

    async def _maintain_sessions(self, stopping: anyio.Event) -> None:
        options = self.options
        renewal = SessionRenewal(
            owner_ids=[options.worker_id],
            extend_for=options.session_lock_timeout,
            idle_timeout=options.session_idle_timeout,
        )
        interval = max(1.0, options.session_lock_timeout / 3)
        since_cleanup = 0.0
        while not await self.clock.wait(stopping, interval):
            try:
                await self._store.renew_sessions(renewal)
                since_cleanup += interval
                if since_cleanup >= options.session_idle_timeout:
                    since_cleanup = 0.0
                    await self._store.cleanup_orphaned_sessions(options.session_idle_timeout)
            except ProviderError as exc:
                log.warning("session maintenance failed: %s", exc)

    async def _sample_queue_depths(self, stopping: anyio.Event) -> None:
        """Keep ``duro.queue.depth`` current while a meter provider listens (real time)."""
        interval = self.options.queue_depth_interval
        while not stopping.is_set():
            if self._metrics.provider() is not None:
                try:
                    depths = await self._store.queue_depths()
                except ProviderError as exc:
                    log.warning("reading queue depths failed: %s", exc)
                else:
                    self._gauges.depths = {
                        "orchestrator": depths.orchestrator,
                        "timers": depths.timers,
                        "worker": depths.worker,
                        "locked": depths.locked,
                    }
            with anyio.move_on_after(interval):
                await stopping.wait()

    # -- introspection -----------------------------------------------------------------------

    @property
    def turns_committed(self) -> int:
        """Turns this runtime committed so far."""
        return self._orchestrator.turns_committed

    @property
    def activities_completed(self) -> int:
        """Activity results this runtime reported so far."""
        return self._worker.activities_completed

    @property
    def cached_executions(self) -> int:
        """Live executions held in the cache right now."""
        return len(self._orchestrator.cache)

    @property
    def in_flight(self) -> int:
        """Turns and activities being processed right now."""
        return self._orchestrator.in_flight + self._worker.in_flight

    def _work_snapshot(self) -> WorkSnapshot:
        """What this runtime holds right now, for deciding that nothing can run (tests)."""
        turns = self._orchestrator.pool
        activities = self._worker.pool
        parked = self._worker.parked
        return WorkSnapshot(
            busy=turns.active + activities.active - parked,
            parked=parked,
            changes=turns.changes + activities.changes,
        )


@dataclass(frozen=True, slots=True)
class WorkSnapshot:
    """Work a runtime holds: ``busy`` turns and activities that can still make progress,
    ``parked`` activities that only wait to be cancelled, and a counter of items started and
    finished (equal in two snapshots: nothing started or finished in between)."""

    busy: int
    parked: int
    changes: int


class _Gauges:
    """What a running runtime shows the observable gauges (read from the SDK's thread)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.depths: dict[str, int] | None = None
        """The last queue depths sampled, by queue."""

    def meter_provider(self) -> MeterProvider | None:
        return self._runtime._metrics.provider()

    def queue_depths(self) -> dict[str, int] | None:
        return self.depths

    def cache_size(self) -> int:
        return self._runtime.cached_executions

    def in_flight_turns(self) -> int:
        return self._runtime._orchestrator.in_flight

    def in_flight_activities(self) -> int:
        return self._runtime._worker.in_flight
