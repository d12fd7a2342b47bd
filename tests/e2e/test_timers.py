"""Durable timers on the virtual clock: nothing here sleeps for real."""

from __future__ import annotations

from datetime import timedelta

import pytest

import duro
from duro.history import TimerCreated, TimerFired
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, history_has, of_type, runtime

pytestmark = pytest.mark.anyio


async def _barrier(client: duro.Client, registry: duro.Registry, name: str) -> None:
    """Run a trivial instance to completion: proves the dispatchers processed what was due."""
    await client.start_orchestration(name, "noop")
    await completed(client, name)


def _register_noop(registry: duro.Registry) -> None:
    @registry.orchestration
    async def noop(ctx: duro.OrchestrationContext) -> None:
        return None


async def test_timer_does_not_fire_before_its_delay_and_fires_once_after(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_noop(registry)

    @registry.orchestration
    async def sleeper(ctx: duro.OrchestrationContext, _: None) -> str:
        await ctx.schedule_timer(3600)
        return "woke"

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-1", sleeper)
        await history_has(client, "t-1", TimerCreated)
        await clock.advance(3599)
        await _barrier(client, registry, "barrier-1")
        assert (await client.get_status("t-1")).state is duro.State.RUNNING
        assert not of_type(await client.get_history("t-1"), TimerFired)
        assert (await client.queue_depths()).timers == 1

        await clock.advance(1)
        assert await completed(client, "t-1") == "woke"
    assert len(of_type(await client.get_history("t-1"), TimerFired)) == 1


async def test_timedelta_delay_records_absolute_fire_time(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    start = clock.now_ms()

    @registry.orchestration
    async def sleeper(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_timer(timedelta(minutes=5))

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-2", sleeper)
        history = await history_has(client, "t-2", TimerCreated)
        assert of_type(history, TimerCreated)[0].fire_at == start + 5 * 60 * 1000
        await clock.advance(timedelta(minutes=5))
        await completed(client, "t-2")


async def test_thirty_day_timer_fires_without_waiting(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def month(ctx: duro.OrchestrationContext, _: None) -> str:
        before = ctx.utc_now()
        await ctx.schedule_timer(timedelta(days=30))
        return str(ctx.utc_now() - before)

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-3", month)
        await history_has(client, "t-3", TimerCreated)
        await clock.advance(timedelta(days=30))
        assert await completed(client, "t-3") == "30 days, 0:00:00"


async def test_utc_now_is_the_turn_time_and_is_stable_on_replay(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    start_ms = clock.now_ms()
    seen: list[float] = []

    @registry.orchestration
    async def times(ctx: duro.OrchestrationContext, _: None) -> list[float]:
        first = ctx.utc_now().timestamp()
        seen.append(first)
        await ctx.schedule_timer(10)
        second = ctx.utc_now().timestamp()
        await ctx.schedule_timer(10)
        return [first, second]

    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("t-4", times)
        await history_has(client, "t-4", TimerCreated)
        await clock.advance(10)
        await history_has(client, "t-4", TimerCreated, 2)
        await clock.advance(10)
        first, second = await completed(client, "t-4")
    assert first == start_ms / 1000
    assert second == (start_ms + 10_000) / 1000
    # every replay of the first step saw the same recorded time
    assert len(seen) >= 3 and set(seen) == {start_ms / 1000}


async def test_timer_survives_runtime_restart_and_fires_once(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def after(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("after")
        return "done"

    @registry.orchestration
    async def hour(ctx: duro.OrchestrationContext, _: None) -> str:
        await ctx.schedule_timer(3600)
        return await ctx.schedule_activity(after)

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-5", hour)
        await history_has(client, "t-5", TimerCreated)
    await clock.advance(3600)
    async with runtime(store, registry, clock):
        assert await completed(client, "t-5") == "done"
    async with runtime(store, registry, clock):
        await clock.advance(3600)
        assert await completed(client, "t-5") == "done"
    assert calls["after"] == 1
    assert len(of_type(await client.get_history("t-5"), TimerFired)) == 1


async def test_event_beats_timeout_timer_and_late_timer_is_ignored(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def approval(ctx: duro.OrchestrationContext, _: None) -> str:
        index, value = await ctx.select(ctx.wait_for_event("approve"), ctx.schedule_timer(30))
        if index == 1:
            return "timed out"
        await ctx.schedule_timer(60)
        return f"approved by {value}"

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-6", approval)
        await client.start_orchestration("t-7", approval)
        await history_has(client, "t-6", TimerCreated)
        await history_has(client, "t-7", TimerCreated)
        await client.raise_event("t-6", "approve", "ann")
        await history_has(client, "t-6", TimerCreated, 2)
        await clock.advance(30)
        assert await completed(client, "t-7") == "timed out"
        await clock.advance(30)
        assert await completed(client, "t-6") == "approved by ann"
    fired = of_type(await client.get_history("t-6"), TimerFired)
    assert [e.seq for e in fired] == [2]  # only the 60 s timer; the dropped 30 s one never fires


async def test_shorter_timer_wins_select_when_both_fall_due_in_one_jump(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def race(ctx: duro.OrchestrationContext, _: None) -> int:
        index, _value = await ctx.select(ctx.schedule_timer(30), ctx.schedule_timer(10))
        return index

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-8", race)
        await history_has(client, "t-8", TimerCreated, 2)
        await clock.advance(60)
        assert await completed(client, "t-8") == 1


async def test_zero_delay_timer_fires_without_advancing_the_clock(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def zero(ctx: duro.OrchestrationContext, _: None) -> str:
        await ctx.schedule_timer(0)
        return "ok"

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-9", zero)
        assert await completed(client, "t-9") == "ok"


async def test_negative_timer_delay_fails_the_instance(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def negative(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_timer(-1)

    async with runtime(store, registry, clock):
        await client.start_orchestration("t-10", negative)
        status = await client.wait_for_orchestration("t-10", timeout=5)
    assert status.state is duro.State.FAILED
    assert status.error is not None and status.error.error_type == "ValueError"
