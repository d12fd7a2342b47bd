"""``Runtime``: runs orchestration turns and activities against one store, in this process."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from .._client import Client
from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ProviderError
from .._registry import Registry
from ..providers import ActivityKey, Provider, SessionRenewal
from ._options import RuntimeOptions
from ._orchestrator import OrchestrationDispatcher
from ._pool import HandOver
from ._worker import ActivityWorker

log = logging.getLogger("duro.runtime")


class Runtime:
    """Dispatchers and the activity worker pool for one store.

    ``async with Runtime(store, registry):`` starts them; leaving the block shuts down
    gracefully: no new work is fetched, in-flight turns and activities get
    ``options.shutdown_grace_period`` seconds to finish, then activities are cancelled.
    Several runtimes (in one process or many) may share one store.
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
        self.options = options or RuntimeOptions()
        self.clock = clock or SYSTEM_CLOCK
        self.client = Client(store)
        self._orchestrator = OrchestrationDispatcher(
            provider=store,
            registry=registry,
            options=self.options,
            clock=self.clock,
            on_cancelled_activities=self._cancel_local,
        )
        self._worker = ActivityWorker(
            provider=store, registry=registry, options=self.options, client=self.client
        )
        if store.fetches_with_commits:
            # Work one side makes due goes straight to the other's pool, fetched in the same
            # round trip as the commit that made it: no wake-up, no separate fetch.
            self._orchestrator.activities = HandOver(
                self._worker.pool, self._worker.fetch_request, self.options.activity_fetch_batch
            )
            self._worker.turns = HandOver(
                self._orchestrator.pool,
                self._orchestrator.fetch_request,
                self.options.orchestration_fetch_batch,
            )
        self._task_group: TaskGroup | None = None
        self._stopping: anyio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start dispatching (``async with`` calls this)."""
        if self._task_group is not None:
            raise RuntimeError("runtime already started")
        await self.store.open()
        self._stopping = anyio.Event()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        if self.options.orchestration_concurrency:
            self._task_group.start_soon(self._orchestrator.run, self._stopping)
        if self.options.activity_concurrency:
            self._task_group.start_soon(self._worker.run, self._stopping)
        if self.options.activity_concurrency and self.options.max_sessions > 0:
            self._task_group.start_soon(self._maintain_sessions, self._stopping)

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop fetching, let in-flight work finish within the grace period, then cancel."""
        if self._task_group is None or self._stopping is None:
            return
        grace = self.options.shutdown_grace_period if grace_period is None else grace_period
        self._stopping.set()
        self._orchestrator.stop_fetching()
        self._worker.stop_fetching()
        with anyio.move_on_after(grace):
            while self._orchestrator.in_flight or self._worker.in_flight:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # shutdown only: a short poll beats per-item events
        self._worker.cancel_all("the runtime is shutting down")
        self._task_group.cancel_scope.cancel()
        task_group, self._task_group = self._task_group, None
        await task_group.__aexit__(None, None, None)

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

    def _cancel_local(self, keys: list[ActivityKey]) -> None:
        self._worker.cancel_running(keys, "the orchestration cancelled this activity")

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
        return self._orchestrator.turns_committed

    @property
    def activities_completed(self) -> int:
        return self._worker.activities_completed

    @property
    def cached_executions(self) -> int:
        return len(self._orchestrator.cache)

    @property
    def in_flight(self) -> int:
        """Turns and activities being processed right now."""
        return self._orchestrator.in_flight + self._worker.in_flight
