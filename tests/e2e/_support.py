"""Helpers shared by the end-to-end tests: fast runtime options and bounded polling."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

import duro
from duro.history import HistoryEvent
from duro.providers import Provider
from duro.testing import VirtualClock

E = TypeVar("E")

POLL_INTERVAL = 0.002
# A deadline, not a delay: waits return as soon as the condition holds. It is generous because
# the Cosmos store runs through a compatibility layer that applies batches one at a time.
WAIT_LIMIT = 30.0


def options(**overrides: Any) -> duro.RuntimeOptions:
    """Small, fast options: short shutdown and cancellation grace, no idle back-off stalls."""
    values: dict[str, Any] = {
        "orchestration_concurrency": 2,
        "activity_concurrency": 4,
        "poll_timeout": 0.05,
        "idle_backoff_min": 0.0,
        "idle_backoff_max": 0.01,
        "shutdown_grace_period": 1.0,
        "activity_cancellation_grace": 0.5,
        # Session maintenance waits on the clock; see test_runtime.py for why tests opt in.
        "max_sessions": 0,
    }
    values.update(overrides)
    return duro.RuntimeOptions(**values)


def runtime(
    store: Provider,
    registry: duro.Registry,
    clock: VirtualClock | None = None,
    **overrides: Any,
) -> duro.Runtime:
    return duro.Runtime(store, registry, options(**overrides), clock=clock)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float = WAIT_LIMIT, what: str = ""
) -> None:
    """Poll ``predicate`` (sync or async) with short real waits until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {what or predicate}")
        await anyio.sleep(POLL_INTERVAL)


def of_type(history: list[HistoryEvent], kind: type[E]) -> list[E]:
    return [e for e in history if isinstance(e, kind)]


async def history_has(
    client: duro.Client,
    instance_id: str,
    kind: type[Any],
    count: int = 1,
    *,
    timeout: float = WAIT_LIMIT,
) -> list[HistoryEvent]:
    """Wait until the current execution's history holds ``count`` events of ``kind``."""
    found: list[HistoryEvent] = []

    async def check() -> bool:
        nonlocal found
        found = await client.get_history(instance_id)
        return len(of_type(found, kind)) >= count

    await wait_until(check, timeout=timeout, what=f"{count} x {kind.__name__} in {instance_id}")
    return found


async def finished(
    client: duro.Client, instance_id: str, timeout: float = WAIT_LIMIT
) -> duro.OrchestrationStatus:
    return await client.wait_for_orchestration(instance_id, timeout=timeout)


async def completed(client: duro.Client, instance_id: str, timeout: float = WAIT_LIMIT) -> Any:
    """Wait for ``instance_id`` and return its output, failing loudly if it did not complete."""
    status = await finished(client, instance_id, timeout)
    assert status.state is duro.State.COMPLETED, f"{instance_id}: {status.state} {status.error}"
    return status.output


async def failed(
    client: duro.Client, instance_id: str, timeout: float = WAIT_LIMIT
) -> duro.ErrorInfo:
    """Wait for ``instance_id`` and return its error, failing loudly if it did not fail."""
    status = await finished(client, instance_id, timeout)
    assert status.state is duro.State.FAILED, f"{instance_id}: {status.state} {status.output}"
    assert status.error is not None
    return status.error


class Calls:
    """Counts calls per key (activity invocations, replays)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.log: list[Any] = []

    def hit(self, key: str, value: Any = None) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        self.log.append(value if value is not None else key)
        return self.counts[key]

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)


@asynccontextmanager
async def clock_running(clock: VirtualClock, step: float = 5.0) -> AsyncIterator[None]:
    """Advance the virtual clock by ``step`` seconds every few real milliseconds while the
    block runs: for waits the runtime measures on the clock (back-off after a deferral)."""
    async with anyio.create_task_group() as tg:

        async def tick() -> None:
            while True:
                await anyio.sleep(0.01)
                await clock.advance(step)

        tg.start_soon(tick)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
