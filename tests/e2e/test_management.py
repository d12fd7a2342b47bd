"""Management through the client: list, history, delete (cascade, force), prune."""

from __future__ import annotations

import pytest

import duro
from duro.history import OrchestrationCompleted, OrchestrationStarted
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, failed, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.orchestration
    async def quick(ctx: duro.OrchestrationContext, n: int) -> int:
        return n

    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("go")

    @registry.orchestration
    async def boom(ctx: duro.OrchestrationContext, _: None) -> None:
        raise RuntimeError("boom")

    @registry.orchestration
    async def family(ctx: duro.OrchestrationContext, wait: bool) -> list[object]:
        children = [ctx.schedule_sub_orchestration("quick", i) for i in range(2)]
        if wait:
            children.append(ctx.schedule_sub_orchestration("waiter"))
        return await ctx.join(children)

    @registry.orchestration
    async def counter(ctx: duro.OrchestrationContext, n: int) -> int:
        ctx.kv.set("n", n)
        if n < 4:
            ctx.continue_as_new(n + 1)
        return n


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_list_instances_filters_by_state_and_name(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-1", "quick", 1)
        await client.start_orchestration("m-2", "boom")
        await client.start_orchestration("m-3", "waiter")
        await completed(client, "m-1")
        await failed(client, "m-2")
        await wait_until(lambda: _running(client, "m-3"))
        everything = await client.list_instances()
        finished = await client.list_instances(states={duro.State.COMPLETED, duro.State.FAILED})
        running = await client.list_instances(states={duro.State.RUNNING})
        by_name = await client.list_instances(name="quick")
        limited = await client.list_instances(limit=2)
    assert {s.instance_id for s in everything} == {"m-1", "m-2", "m-3"}
    assert {s.instance_id for s in finished} == {"m-1", "m-2"}
    assert [s.instance_id for s in running] == ["m-3"]
    assert [(s.instance_id, s.output) for s in by_name] == [("m-1", 1)]
    assert len(limited) == 2


async def test_list_instances_pages_through_many_and_returns_newest_first(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    for i in range(30):
        await client.start_orchestration(f"page-{i:02d}", "quick", i)
        await clock.advance(0.001)
    listed = await client.list_instances(limit=25)
    assert [s.instance_id for s in listed] == [f"page-{i:02d}" for i in range(29, 4, -1)]
    assert all(s.state is duro.State.PENDING for s in listed)


async def test_get_history_returns_the_recorded_events_in_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-4", "quick", 5)
        await completed(client, "m-4")
    history = await client.get_history("m-4")
    assert isinstance(history[0], OrchestrationStarted) and history[0].name == "quick"
    assert isinstance(history[-1], OrchestrationCompleted)
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert await client.get_history("never-started") == []


async def test_delete_completed_instance_removes_everything_and_frees_the_id(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-5", "quick", 1)
        await completed(client, "m-5")
        result = await client.delete_instance("m-5")
        assert result.instances_deleted == 1 and result.events_deleted > 0
        assert (await client.get_status("m-5")).state is duro.State.NOT_FOUND
        assert await client.get_history("m-5") == []
        await client.start_orchestration("m-5", "quick", 2)
        assert await completed(client, "m-5") == 2


async def test_delete_running_instance_needs_force(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-6", "waiter")
        await wait_until(lambda: _running(client, "m-6"))
        with pytest.raises(duro.InstanceStillRunningError):
            await client.delete_instance("m-6")
        assert (await client.get_status("m-6")).state is duro.State.RUNNING
        await client.delete_instance("m-6", force=True)
        assert (await client.get_status("m-6")).state is duro.State.NOT_FOUND
        with pytest.raises(duro.InstanceNotFoundError):
            await client.raise_event("m-6", "go")
        # the dispatchers are not wedged by the vanished instance
        await client.start_orchestration("m-7", "quick", 7)
        assert await completed(client, "m-7") == 7


async def test_delete_cascades_to_sub_orchestrations(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-8", "family", False)
        assert await completed(client, "m-8") == [0, 1]
        children = await client.list_instances(name="quick")
        assert {c.parent_instance_id for c in children} == {"m-8"}
        result = await client.delete_instance("m-8")
    assert result.instances_deleted == 3
    assert await client.list_instances() == []


async def test_delete_with_a_running_child_needs_force_and_then_removes_the_tree(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-9", "family", True)
        await wait_until(lambda: _count_children(client, "m-9", 3))
        with pytest.raises(duro.InstanceStillRunningError):
            await client.delete_instance("m-9")
        result = await client.delete_instance("m-9", force=True)
        assert result.instances_deleted == 4
        assert await client.list_instances() == []


async def _count_children(client: duro.Client, parent: str, n: int) -> bool:
    statuses = await client.list_instances()
    return len([s for s in statuses if s.parent_instance_id == parent]) == n


async def test_delete_unknown_instance_raises_not_found(client: duro.Client) -> None:
    with pytest.raises(duro.InstanceNotFoundError):
        await client.delete_instance("nobody")


async def test_prune_executions_keeps_the_latest_and_the_kv(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("m-10", "counter", 0)
        assert await completed(client, "m-10") == 4
    assert (await client.get_status("m-10")).execution_id == 5
    result = await client.prune_executions("m-10", keep_last=2)
    assert result.executions_deleted == 3 and result.events_deleted > 0
    for gone in (1, 2, 3):
        assert await client.get_history("m-10", gone) == []
    assert await client.get_history("m-10", 4) != []
    assert await client.get_history("m-10") != []
    assert await client.get_value("m-10", "n") == 4
    assert (await client.prune_executions("m-10", keep_last=2)).executions_deleted == 0
    with pytest.raises(duro.InstanceNotFoundError):
        await client.prune_executions("nobody")
