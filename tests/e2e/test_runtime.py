"""Runtime behaviour: graceful shutdown, lock renewal and expiry, poison, shared stores, clocks."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import duro
from duro.history import ActivityCompleted, ActivityScheduled, TimerCreated
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


async def test_graceful_shutdown_lets_an_in_flight_activity_finish_and_report(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    release = anyio.Event()

    @registry.activity
    async def slow(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("slow")
        await release.wait()
        return "finished"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> str:
        return await ctx.schedule_activity(slow)

    leaving = anyio.Event()

    async def release_once_shutdown_began() -> None:
        await leaving.wait()
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_once_shutdown_began)
        async with runtime(store, registry, clock, shutdown_grace_period=5.0) as rt:
            await client.start_orchestration("rt-1", orch)
            # The activity starts from the commit of the turn that scheduled it (hand-over),
            # so it can run before that turn's own bookkeeping ends: wait for both.
            await wait_until(lambda: calls["slow"] == 1 and rt.in_flight == 1)
            # set with no checkpoint before __aexit__: shutdown starts before the release runs
            leaving.set()
    assert (await client.get_status("rt-1")).state is duro.State.RUNNING
    async with runtime(store, registry, clock):
        assert await completed(client, "rt-1") == "finished"
    assert calls["slow"] == 1


async def test_shutdown_cancels_activities_that_outlive_the_grace_period(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def stubborn(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("start")
        await ctx.wait_cancelled()
        calls.hit("told to stop", ctx.cancel_reason)
        return "ignored"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> str:
        return await ctx.schedule_activity(stubborn)

    with anyio.fail_after(5):
        async with runtime(
            store, registry, clock, shutdown_grace_period=0.05, activity_cancellation_grace=0.05
        ):
            await client.start_orchestration("rt-2", orch)
            await wait_until(lambda: calls["start"] == 1)
    assert calls["told to stop"] == 1
    assert (await client.get_status("rt-2")).state is duro.State.RUNNING
    assert not of_type(await client.get_history("rt-2"), ActivityCompleted)


async def test_long_activity_keeps_its_lock_by_renewal_and_runs_once(
    registry: duro.Registry,
) -> None:
    # Real clock: lock renewal runs on wall time. The lock is shorter than the activity.
    store = duro.InMemoryProvider()
    client = duro.Client(store)
    calls = Calls()

    @registry.activity
    async def long(ctx: duro.ActivityContext, _: None) -> int:
        calls.hit("long")
        await anyio.sleep(0.8)
        return ctx.attempt

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity(long)

    async with runtime(store, registry, None, activity_lock_timeout=0.3):
        await client.start_orchestration("rt-3", orch)
        assert await completed(client, "rt-3") == 1
    assert calls["long"] == 1


async def test_activity_whose_lock_expires_is_redelivered_with_a_higher_attempt(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def hangs_once(ctx: duro.ActivityContext, _: None) -> int:
        calls.hit("run", ctx.attempt)
        if ctx.attempt == 1:
            await ctx.wait_cancelled()  # a worker that stopped renewing: its lock lapses
        return ctx.attempt

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity(hangs_once)

    # The first runtime's one slot holds the hung run, so it fetches nothing more (a worker
    # re-fetching its own lapsed item adopts it instead: see test_hostile_code.py).
    async with runtime(store, registry, clock, activity_lock_timeout=30, activity_concurrency=1):
        await client.start_orchestration("rt-4", orch)
        await wait_until(lambda: calls["run"] == 1)
        async with runtime(store, registry, clock, activity_lock_timeout=30):
            await clock.advance(31)
            assert await completed(client, "rt-4") == 2
    assert calls.log == [1, 2]
    assert len(of_type(await client.get_history("rt-4"), ActivityCompleted)) == 1


async def test_activity_redelivered_too_often_fails_as_poison(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def never_finishes(ctx: duro.ActivityContext, _: None) -> None:
        calls.hit("run")
        await ctx.wait_cancelled()

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        try:
            await ctx.schedule_activity(never_finishes)
        except duro.ActivityFailedError as exc:
            return [exc.error.category.value, exc.error_type]
        return []

    options: dict[str, Any] = {"activity_lock_timeout": 30, "max_deliveries": 1}
    async with runtime(store, registry, clock, activity_concurrency=1, **options):
        await client.start_orchestration("rt-5", orch)
        await wait_until(lambda: calls["run"] == 1)
        async with runtime(store, registry, clock, **options):
            await clock.advance(31)
            assert await completed(client, "rt-5") == ["infrastructure", "PoisonMessage"]
    assert calls["run"] == 1


async def test_two_runtimes_on_one_store_complete_every_instance_exactly_once(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def work(ctx: duro.ActivityContext, n: int) -> int:
        calls.hit(f"work{n}")
        return n * n

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, n: int) -> int:
        return await ctx.schedule_activity(work, n) + await ctx.schedule_activity(work, n)

    async with runtime(store, registry, clock), runtime(store, registry, clock):
        for n in range(20):
            await client.start_orchestration(f"rt-6-{n}", orch, n)
        for n in range(20):
            assert await completed(client, f"rt-6-{n}") == 2 * n * n
    assert all(calls[f"work{n}"] == 2 for n in range(20))


async def test_advancing_the_virtual_clock_with_default_options_keeps_the_runtime_dispatching(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def sleeper(ctx: duro.OrchestrationContext, _: None) -> str:
        await ctx.schedule_timer(3600)
        return await ctx.wait_for_event("after")

    options = duro.RuntimeOptions(shutdown_grace_period=1.0)  # sessions and back-off as shipped
    async with duro.Runtime(store, registry, options, clock=clock):
        await client.start_orchestration("rt-7", sleeper)
        await history_has(client, "rt-7", TimerCreated)
        await clock.advance(3600)
        await client.raise_event("rt-7", "after", "still dispatching")
        assert await completed(client, "rt-7") == "still dispatching"


async def test_runtime_counters_report_work_done(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def work(ctx: duro.ActivityContext, _: None) -> None:
        return None

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(work)

    async with runtime(store, registry, clock) as rt:
        await client.start_orchestration("rt-8", orch)
        await completed(client, "rt-8")
        # The store shows the last commit before the tasks that made it count it; the
        # activity's report even hands the final turn over before its own task resumes.
        await wait_until(lambda: rt.activities_completed == 1 and rt.turns_committed >= 2)
        assert rt.activities_completed == 1
    assert len(of_type(await client.get_history("rt-8"), ActivityScheduled)) == 1
