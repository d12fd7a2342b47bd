"""``WorkflowEnvironment``: a runtime, a store and a client for a test, on virtual time that
skips ahead by itself."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import anyio

from .._client import Client
from .._registry import Registry
from .._runtime import Runtime, RuntimeOptions
from .._status import OrchestrationStatus, State
from ..providers import Provider, TagFilter
from ..providers._memory import InMemoryProvider
from ._clock import VirtualClock
from ._skipper import TimeSkipper

StoreFactory = Callable[[VirtualClock], Provider]

_LONG = 10 * 365 * 24 * 3600.0
"""Lock timeouts in the environment (seconds): time jumps by days, and one runtime has no
one to hand a lock over to, so a lock must never expire in a jump."""

TEST_OPTIONS = RuntimeOptions(
    orchestration_concurrency=4,
    activity_concurrency=8,
    poll_timeout=0.05,
    idle_backoff_min=0.0,
    idle_backoff_max=0.005,
    shutdown_grace_period=1.0,
    activity_cancellation_grace=0.5,
    execution_cache_size=0,
    orchestration_lock_timeout=_LONG,
    activity_lock_timeout=_LONG,
    session_lock_timeout=_LONG,
    session_idle_timeout=_LONG,
    tag_filter=TagFilter.any(),
    worker_id="workflow-environment",
)
"""The environment's runtime options: short polls and grace periods, every turn replayed
(``execution_cache_size=0``, so nondeterminism shows up in tests), every activity tag served,
and locks that outlast any time jump."""


class _EnvironmentClient(Client):
    """A ``Client`` whose waits let the environment's time skip while they wait."""

    def __init__(self, store: Provider, registry: Registry, skipper: TimeSkipper | None) -> None:
        super().__init__(store, registry=registry)
        self._skipper = skipper

    async def _wait(
        self,
        instance_id: str,
        timeout: float | timedelta,
        done: Callable[[OrchestrationStatus[Any]], bool],
        what: str,
        *,
        ending_only: bool = False,
        output_type: Any = Any,
    ) -> OrchestrationStatus[Any]:
        wait = super()._wait(
            instance_id, timeout, done, what, ending_only=ending_only, output_type=output_type
        )
        if self._skipper is None:
            return await wait

        async def satisfied() -> bool:
            status = await self.get_status(instance_id)
            return status.state is State.NOT_FOUND or done(status)

        with self._skipper.waiting(satisfied):
            return await wait


class WorkflowEnvironment:
    """Everything a workflow test needs, on virtual time that skips ahead by itself.

    ``async with WorkflowEnvironment(registry) as env:`` runs a ``Runtime`` for ``registry``
    on an in-memory store (or ``store``) with a ``VirtualClock`` (``env.clock``), and
    ``env.client`` talks to it. While the test waits on ``env.client`` (``wait_for_*``) or in
    ``env.sleep``, and nothing can run, the clock jumps to the next due timer: a workflow that
    waits 30 days, retries with back-off and races events against timeouts finishes in
    milliseconds. Timeouts passed to ``env.client`` are real seconds, so they bound the test's
    wall time. When and why time jumps is explained in ``docs/testing.md``.

    ``store`` is a provider that reads time from ``clock`` (pass both), or a function that
    builds one from the environment's clock (``lambda clock: SqliteProvider(path,
    clock=clock)``); time skipping needs a store that reports ``QueueDepths.next_due_ms``
    (the in-memory and SQLite stores do). ``options`` replaces ``TEST_OPTIONS``;
    ``skip_time=False`` leaves the clock to the test (``await env.clock.advance(...)``).
    The environment works on a copy of ``registry``: ``mock_activity`` changes only the copy.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        store: Provider | StoreFactory | None = None,
        clock: VirtualClock | None = None,
        options: RuntimeOptions | None = None,
        skip_time: bool = True,
    ) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        if store is None:
            store = InMemoryProvider(clock=self.clock)
        elif not isinstance(store, Provider):
            store = store(self.clock)
        elif clock is None:
            raise ValueError(
                "a store passed in must read time from the environment's clock: pass the "
                "clock too (WorkflowEnvironment(registry, store=s, clock=c)), or pass "
                "store=lambda clock: SqliteProvider(path, clock=clock)"
            )
        self.store: Provider = store
        self.registry = registry._copy()
        self.options = options if options is not None else TEST_OPTIONS
        self.runtime = Runtime(self.store, self.registry, self.options, clock=self.clock)
        self._skipper = TimeSkipper(self.clock, self.store, self.runtime) if skip_time else None
        self.client: Client = _EnvironmentClient(self.store, self.registry, self._skipper)
        """A ``Client`` on the store; its waits let time skip (timeouts in real seconds)."""
        self._stack: contextlib.AsyncExitStack | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("the environment is already running")
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(self.store)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await stack.enter_async_context(self.runtime)
            if self._skipper is not None:
                task_group.start_soon(self._skipper.run)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- time --------------------------------------------------------------------------------

    async def sleep(self, delay: float | timedelta) -> None:
        """Let ``delay`` of workflow time pass: every timer due on the way fires in order, and
        this returns once nothing can run at the new time. Real time barely moves."""
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        if self._skipper is None:
            await self.clock.advance(seconds)
            return
        await self._skipper.sleep(seconds)

    @property
    def time_skips(self) -> int:
        """How many times the clock jumped so far."""
        return 0 if self._skipper is None else self._skipper.jumps

    # -- activities --------------------------------------------------------------------------

    def mock_activity(self, activity: str | Callable[..., Any], fn: Callable[..., Any]) -> None:
        """Run ``fn`` instead of the activity ``activity`` (a registered function or name) in
        this environment, from now on.

        ``fn`` takes ``(ctx, input)`` or ``(ctx)`` like an activity; it may be ``async def``,
        a plain function (run in a worker thread) or anything returning an awaitable (an
        ``unittest.mock.AsyncMock``). Inputs and results keep the real activity's types. A name
        that is not registered is registered (an activity another worker would run).
        """
        name = self.registry.name_of(activity, "activity")
        self.registry._replace_activity(name, _as_activity(fn))


def _as_activity(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as an async activity with a signature the registry reads: ``(ctx, input)`` or
    ``(ctx)``, whatever kind of callable it is."""
    run_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )

    async def call(*args: Any) -> Any:
        if run_async:
            result = fn(*args)
        else:
            result = await anyio.to_thread.run_sync(functools.partial(fn, *args))
        if inspect.isawaitable(result):
            result = await result
        return result

    try:
        takes_input = len(inspect.signature(fn).parameters) != 1
    except (TypeError, ValueError):
        takes_input = True

    async def with_input(ctx: Any, input: Any) -> Any:
        return await call(ctx, input)

    async def without_input(ctx: Any) -> Any:
        return await call(ctx)

    activity = with_input if takes_input else without_input
    activity.__qualname__ = f"mock of {getattr(fn, '__qualname__', repr(fn))}"
    return activity


__all__ = ["TEST_OPTIONS", "WorkflowEnvironment"]
