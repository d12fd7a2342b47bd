"""``Runtime``: runs orchestration turns and activities against one store, in this process."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskStatus

from .._client import Client
from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ProviderError
from .._registry import Registry
from ..providers import ActivityWorkItem, OrchestrationWorkItem, Provider, SessionRenewal
from ._handover import HandOver
from ._options import RuntimeOptions
from ._orchestrator import ExecutionCache, OrchestrationDispatcher
from ._pool import WorkPool
from ._requests import activity_fetch_request, turn_fetch_request
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
        self.client = Client(store)
        cache = ExecutionCache(options.execution_cache_size)
        turn_request = turn_fetch_request(options, cache.index)
        activity_request = activity_fetch_request(options)
        hand_over = store.fetches_with_commits
        turn_pool = WorkPool[OrchestrationWorkItem](
            options.orchestration_concurrency, receives_hand_overs=hand_over
        )
        activity_pool = WorkPool[ActivityWorkItem](
            options.activity_concurrency, receives_hand_overs=hand_over
        )
        commits = HandOver(
            store,
            turns=turn_pool,
            activities=activity_pool,
            turn_request=turn_request,
            activity_request=activity_request,
        )
        self._worker = ActivityWorker(
            provider=store,
            registry=registry,
            options=options,
            client=self.client,
            pool=activity_pool,
            request=activity_request,
            complete_activities=commits.complete_activities,
        )
        self._orchestrator = OrchestrationDispatcher(
            provider=store,
            registry=registry,
            options=options,
            clock=clock,
            cache=cache,
            pool=turn_pool,
            request=turn_request,
            commit_turns=commits.commit_turns,
            on_withdrawn=self._worker.cancel_withdrawn,
        )
        self._running = False
        self._grace = options.shutdown_grace_period
        # Events are made on first use: they need a running event loop, construction does not.
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until :meth:`shutdown`, then drain gracefully and return.

        With ``await task_group.start(runtime.run)`` the call returns once dispatching has
        begun. A runtime runs once.
        """
        if self._running:
            raise RuntimeError("runtime already started")
        self._running = True
        worker_id = self.options.worker_id
        try:
            await self.store.open()
            await self.store.runtime_started(worker_id)
            stopping = anyio.Event()
            async with anyio.create_task_group() as tg:
                if self.options.orchestration_concurrency:
                    tg.start_soon(self._orchestrator.run, stopping)
                if self.options.activity_concurrency:
                    tg.start_soon(self._worker.run, stopping)
                if self.options.activity_concurrency and self.options.max_sessions > 0:
                    tg.start_soon(self._maintain_sessions, stopping)
                tg.start_soon(self._maintain_store, stopping)
                task_status.started()
                await self._stop_event().wait()
                await self._drain(stopping)
                tg.cancel_scope.cancel()
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    await self.store.runtime_stopped(worker_id)
            except ProviderError as exc:
                log.warning("telling the store that this runtime stopped failed: %s", exc)
            self._stopped_event().set()

    async def _drain(self, stopping: anyio.Event) -> None:
        """Stop fetching, let in-flight work finish within the grace period, then cancel."""
        stopping.set()
        self._orchestrator.stop_fetching()
        self._worker.stop_fetching()
        with anyio.move_on_after(self._grace):
            while self._orchestrator.in_flight or self._worker.in_flight:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # shutdown only: a short poll beats per-item events
        self._worker.cancel_all("the runtime is shutting down")

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
                delay = await self.store.maintain()
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
                await self.store.renew_sessions(renewal)
                since_cleanup += interval
                if since_cleanup >= options.session_idle_timeout:
                    since_cleanup = 0.0
                    await self.store.cleanup_orphaned_sessions(options.session_idle_timeout)
            except ProviderError as exc:
                log.warning("session maintenance failed: %s", exc)

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
