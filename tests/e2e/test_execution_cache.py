"""The execution cache keeps busy executions and only a bounded number of idle ones.

An execution is idle when nothing of its own can wake it soon: it waits for an event, a
mailbox message or a timer more than a minute away. Waiting instances may number in the
hundreds of thousands, so at most ``idle_execution_cache_size`` of them stay in memory; the
rest are replayed from history when they wake, with the same results.
"""

from __future__ import annotations

import anyio
import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, runtime, wait_until

pytestmark = pytest.mark.anyio


async def test_waiting_instances_beyond_the_idle_bound_leave_memory_and_wake_by_replay(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, n: int) -> int:
        calls.hit(f"run-{n}")
        return n + await ctx.wait_for_event("go", type=int)

    async with runtime(store, registry, clock, idle_execution_cache_size=2) as rt:
        for n in range(5):
            await client.start_orchestration(f"idle-{n}", waiter, n)
        await wait_until(lambda: rt.turns_committed == 5, what="every instance waits")
        assert rt.cached_executions == 2
        for n in range(5):
            await client.raise_event(f"idle-{n}", "go", 10)
        outputs = [await completed(client, f"idle-{n}") for n in range(5)]
    assert outputs == [10, 11, 12, 13, 14]
    # The three dropped from memory ran their code again on waking; the two kept did not.
    assert sorted(calls[f"run-{n}"] for n in range(5)) == [1, 1, 2, 2, 2]


async def test_work_in_flight_or_a_near_timer_keeps_an_execution_cached(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    release = anyio.Event()

    @registry.activity
    async def slow(ctx: duro.ActivityContext, _: None) -> str:
        await release.wait()
        return "done"

    @registry.orchestration
    async def working(ctx: duro.OrchestrationContext, _: None) -> str:
        return str(await ctx.schedule_activity(slow))

    @registry.orchestration
    async def sleeping(ctx: duro.OrchestrationContext, seconds: float) -> None:
        await ctx.schedule_timer(seconds)

    async with runtime(store, registry, clock, idle_execution_cache_size=0) as rt:
        await client.start_orchestration("busy-activity", working)
        await client.start_orchestration("busy-timer", sleeping, 30.0)
        await client.start_orchestration("idle-timer", sleeping, 3600.0)
        await wait_until(lambda: rt.turns_committed == 3, what="three first turns")
        assert rt.cached_executions == 2  # the hour-long timer's execution was dropped
        release.set()
        assert await completed(client, "busy-activity") == "done"


def test_cache_sizes_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="cache sizes cannot be negative"):
        duro.RuntimeOptions(idle_execution_cache_size=-1)
