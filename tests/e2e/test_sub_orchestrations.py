"""Sub-orchestrations (awaited children) and detached starts (fire and forget)."""

from __future__ import annotations

import pytest

import duro
from duro.history import OrchestrationChained, SubOrchestrationScheduled
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import clock_running, completed, failed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register_children(registry: duro.Registry) -> None:
    @registry.activity
    async def double(ctx: duro.ActivityContext, n: int) -> int:
        return n * 2

    @registry.orchestration
    async def child(ctx: duro.OrchestrationContext, n: int) -> dict[str, object]:
        return {
            "value": await ctx.schedule_activity(double, n),
            "me": ctx.instance_id,
            "parent": ctx.parent_instance_id,
        }

    @registry.orchestration
    async def broken_child(ctx: duro.OrchestrationContext, _: None) -> None:
        raise ZeroDivisionError("child divided by zero")

    @registry.orchestration
    async def waiting_child(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("go")


async def test_sub_orchestration_result_is_returned_to_the_parent(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, n: int) -> object:
        return await ctx.schedule_sub_orchestration("child", n)

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-1", parent, 21)
        result = await completed(client, "p-1")
    assert result == {"value": 42, "me": "p-1:1:1", "parent": "p-1"}
    child = await client.get_status("p-1:1:1")
    assert child.state is duro.State.COMPLETED
    assert child.parent_instance_id == "p-1"


async def test_sub_orchestration_with_explicit_instance_id(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.schedule_sub_orchestration("child", 1, instance_id="kid-1")

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-2", parent)
        assert await completed(client, "p-2") == {"value": 2, "me": "kid-1", "parent": "p-2"}
    scheduled = of_type(await client.get_history("p-2"), SubOrchestrationScheduled)
    assert [(e.name, e.instance_id) for e in scheduled] == [("child", "kid-1")]


async def test_failed_sub_orchestration_raises_sub_orchestration_failed_in_parent(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        try:
            await ctx.schedule_sub_orchestration("broken_child", instance_id="bad-kid")
        except duro.SubOrchestrationFailedError as exc:
            return [exc.error_type, exc.error_message, exc.instance_id, exc.name]
        return []

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-3", parent)
        assert await completed(client, "p-3") == [
            "ZeroDivisionError",
            "child divided by zero",
            "bad-kid",
            "broken_child",
        ]
        assert (await failed(client, "bad-kid")).error_type == "ZeroDivisionError"


async def test_uncaught_sub_orchestration_failure_fails_the_parent(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_sub_orchestration("broken_child")

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-4", parent)
        error = await failed(client, "p-4")
    assert error.category is duro.ErrorCategory.APPLICATION
    assert error.error_type == "SubOrchestrationFailedError"
    assert "child divided by zero" in error.message


async def test_unregistered_sub_orchestration_fails_the_child_on_its_last_delivery(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        try:
            await ctx.schedule_sub_orchestration("nope", instance_id="nope-1")
        except duro.SubOrchestrationFailedError as exc:
            return [exc.error.category.value, exc.error_type]
        return []

    async with runtime(store, registry, clock, max_deliveries=3), clock_running(clock):
        await client.start_orchestration("p-5", parent)
        assert await completed(client, "p-5") == ["configuration", "UnregisteredError"]


async def test_sub_orchestrations_nest_and_fan_out(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def middle(ctx: duro.OrchestrationContext, n: int) -> int:
        results = await ctx.join([ctx.schedule_sub_orchestration("child", n + i) for i in range(3)])
        return sum(r["value"] for r in results)

    @registry.orchestration
    async def top(ctx: duro.OrchestrationContext, _: None) -> list[int]:
        return await ctx.join([ctx.schedule_sub_orchestration(middle, n) for n in (0, 10)])

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-6", top)
        assert await completed(client, "p-6") == [6, 66]
        grandchildren = await client.list_instances(name="child")
    assert len(grandchildren) == 6
    assert {g.parent_instance_id for g in grandchildren} == {"p-6:1:1", "p-6:1:2"}


async def test_detached_start_does_not_wait_and_has_no_parent_link(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def launcher(ctx: duro.OrchestrationContext, _: None) -> str:
        ctx.start_orchestration("waiting_child", None, instance_id="detached-1")
        return "launched"

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-7", launcher)
        assert await completed(client, "p-7") == "launched"
        await wait_until(lambda: _running(client, "detached-1"), what="detached child running")
        detached = await client.get_status("detached-1")
        assert detached.parent_instance_id is None
        await client.raise_event("detached-1", "go", "later")
        assert await completed(client, "detached-1") == "later"
    chained = of_type(await client.get_history("p-7"), OrchestrationChained)
    assert [(e.name, e.instance_id) for e in chained] == [("waiting_child", "detached-1")]


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_detached_start_survives_parent_failure(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.activity
    async def boom(ctx: duro.ActivityContext, _: None) -> None:
        raise RuntimeError("boom")

    @registry.orchestration
    async def launcher(ctx: duro.OrchestrationContext, _: None) -> None:
        ctx.start_orchestration("child", 5, instance_id="orphan-1")
        await ctx.schedule_activity(boom)

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-8", launcher)
        await failed(client, "p-8")
        assert await completed(client, "orphan-1") == {
            "value": 10,
            "me": "orphan-1",
            "parent": None,
        }


async def test_child_id_already_taken_fails_the_sub_orchestration_not_the_existing_instance(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            await ctx.schedule_sub_orchestration("child", 1, instance_id="taken")
        except duro.SubOrchestrationFailedError as exc:
            return exc.error_type
        return "no error"

    async with runtime(store, registry, clock):
        await client.start_orchestration("taken", "child", 100)
        assert (await completed(client, "taken"))["value"] == 200
        await client.start_orchestration("p-9", parent)
        assert await completed(client, "p-9") == "InstanceAlreadyExistsError"
        taken = await client.get_status("taken")
    assert taken.output["value"] == 200 and taken.parent_instance_id is None


async def test_parent_waits_for_a_long_running_child(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_children(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.schedule_sub_orchestration("waiting_child", instance_id="slow-kid")

    async with runtime(store, registry, clock):
        await client.start_orchestration("p-10", parent)
        await history_has(client, "p-10", SubOrchestrationScheduled)
        await wait_until(lambda: _running(client, "slow-kid"))
        assert (await client.get_status("p-10")).state is duro.State.RUNNING
        await client.raise_event("slow-kid", "go", [1, 2])
        assert await completed(client, "p-10") == [1, 2]
