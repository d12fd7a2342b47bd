"""Client-side cancellation reaches the instance, its activities and its sub-orchestrations."""

from __future__ import annotations

import threading

import pytest

import duro
from duro.history import ActivityCompleted, CancelRequested, SubOrchestrationScheduled
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_cancelled_instance_fails_with_cancelled_category_and_reason(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("never")

    async with runtime(store, registry, clock):
        await client.start_orchestration("c-1", waiter)
        await wait_until(lambda: _running(client, "c-1"))
        await client.cancel_orchestration("c-1", "operator said stop")
        error = await failed(client, "c-1")
    assert error.category is duro.ErrorCategory.CANCELLED
    assert "operator said stop" in error.message
    history = await client.get_history("c-1")
    assert [e.reason for e in of_type(history, CancelRequested)] == ["operator said stop"]


async def test_cancellation_reaches_running_async_and_sync_activities(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    sync_started = threading.Event()
    sync_saw_cancel = threading.Event()

    @registry.activity
    async def async_work(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("async:start")
        await ctx.wait_cancelled()
        calls.hit("async:cancelled")
        return "ignored"

    @registry.activity
    def sync_work(ctx: duro.ActivityContext, _: None) -> str:
        sync_started.set()
        for _ in range(500):
            if ctx.is_cancelled:
                sync_saw_cancel.set()
                break
            threading.Event().wait(0.01)
        return "ignored"

    @registry.orchestration
    async def busy(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.join([ctx.schedule_activity(async_work), ctx.schedule_activity(sync_work)])

    async with runtime(store, registry, clock):
        await client.start_orchestration("c-2", busy)
        await wait_until(lambda: calls["async:start"] == 1 and sync_started.is_set())
        await client.cancel_orchestration("c-2")
        assert (await failed(client, "c-2")).category is duro.ErrorCategory.CANCELLED
        await wait_until(lambda: calls["async:cancelled"] == 1, what="async activity cancelled")
        await wait_until(sync_saw_cancel.is_set, what="sync activity cancelled")
    assert not of_type(await client.get_history("c-2"), ActivityCompleted)


async def test_cancellation_reaches_sub_orchestrations_and_their_children(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def leaf(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("never")

    @registry.orchestration
    async def middle(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_sub_orchestration(leaf, instance_id="c-leaf")

    @registry.orchestration
    async def top(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_sub_orchestration(middle, instance_id="c-middle")

    async with runtime(store, registry, clock):
        await client.start_orchestration("c-3", top)
        await wait_until(lambda: _running(client, "c-leaf"), what="grandchild running")
        await client.cancel_orchestration("c-3", "tear down")
        for instance_id in ("c-3", "c-middle", "c-leaf"):
            error = await failed(client, instance_id)
            assert error.category is duro.ErrorCategory.CANCELLED, instance_id


async def test_cancelling_a_finished_instance_is_refused_and_changes_nothing(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def quick(ctx: duro.OrchestrationContext, _: None) -> str:
        return "done"

    async with runtime(store, registry, clock):
        await client.start_orchestration("c-4", quick)
        await completed(client, "c-4")
        with pytest.raises(duro.InstanceFinishedError, match="already completed"):
            await client.cancel_orchestration("c-4")
        await wait_until(lambda: _queues_idle(client))
        status = await client.get_status("c-4")
    assert status.state is duro.State.COMPLETED and status.output == "done"


async def _queues_idle(client: duro.Client) -> bool:
    depths = await client.queue_depths()
    return depths.orchestrator == 0 and depths.locked == 0


async def test_cancelled_parent_drops_pending_timers_and_child_results(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def after_timer(ctx: duro.ActivityContext, _: None) -> None:
        calls.hit("after_timer")

    @registry.orchestration
    async def sleepy(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_timer(60)
        await ctx.schedule_activity(after_timer)

    async with runtime(store, registry, clock):
        await client.start_orchestration("c-5", sleepy)
        await wait_until(lambda: _running(client, "c-5"))
        await client.cancel_orchestration("c-5")
        await failed(client, "c-5")
        before = await client.get_history("c-5")
        await clock.advance(60)
        await wait_until(lambda: _queues_idle(client))
        assert await client.get_history("c-5") == before
    assert calls["after_timer"] == 0
    assert not of_type(before, SubOrchestrationScheduled)


async def test_orchestration_keeps_running_other_instances_after_a_cancel(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("go")

    async with runtime(store, registry, clock, orchestration_concurrency=1):
        await client.start_orchestration("c-6", waiter)
        await client.start_orchestration("c-7", waiter)
        await client.cancel_orchestration("c-6")
        await failed(client, "c-6")
        await client.raise_event("c-7", "go", 7)
        assert await completed(client, "c-7") == 7
