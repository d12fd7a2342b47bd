"""Orchestration versions: new instances take the latest, running ones keep their own."""

from __future__ import annotations

import pytest

import duro
from duro.history import ActivityCompleted
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, history_has, runtime, wait_until

pytestmark = pytest.mark.anyio


def _versioned(*versions: str) -> duro.Registry:
    """Registry where each version's code is distinct (no default-arg trick)."""
    registry = duro.Registry()

    @registry.activity
    async def step(ctx: duro.ActivityContext, label: str) -> str:
        return label

    if "1.0.0" in versions:

        @registry.orchestration(name="flow", version="1.0.0")
        async def flow_v1(ctx: duro.OrchestrationContext, _: None) -> str:
            await ctx.schedule_activity("step", "one")
            got = await ctx.wait_for_event("go")
            return f"v1 {ctx.version} {got}"

    if "2.0.0" in versions:

        @registry.orchestration(name="flow", version="2.0.0")
        async def flow_v2(ctx: duro.OrchestrationContext, _: None) -> str:
            got = await ctx.wait_for_event("go")
            await ctx.schedule_timer(0)
            return f"v2 {ctx.version} {got}"

    if "10.0.0" in versions:

        @registry.orchestration(name="flow", version="10.0.0")
        async def flow_v10(ctx: duro.OrchestrationContext, _: None) -> str:
            got = await ctx.wait_for_event("go")
            return f"v10 {ctx.version} {got}"

    return registry


async def test_new_instances_start_on_the_latest_version(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    async with runtime(store, _versioned("1.0.0", "2.0.0"), clock):
        await client.start_orchestration("v-1", "flow")
        await client.raise_event("v-1", "go", "x")
        assert await completed(client, "v-1") == "v2 2.0.0 x"
    assert (await client.get_status("v-1")).version == "2.0.0"


async def test_versions_compare_numerically(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    async with runtime(store, _versioned("2.0.0", "10.0.0"), clock):
        await client.start_orchestration("v-2", "flow")
        await client.raise_event("v-2", "go", "x")
        assert await completed(client, "v-2") == "v10 10.0.0 x"


async def test_explicit_version_on_start_is_honoured(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    async with runtime(store, _versioned("1.0.0", "2.0.0"), clock):
        await client.start_orchestration("v-3", "flow", version="1.0.0")
        await client.raise_event("v-3", "go", "x")
        assert await completed(client, "v-3") == "v1 1.0.0 x"


async def test_running_instance_keeps_its_version_after_a_new_one_is_deployed(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    async with runtime(store, _versioned("1.0.0"), clock):
        await client.start_orchestration("v-4", "flow")
        await history_has(client, "v-4", ActivityCompleted)
    # redeploy with v2 registered; every turn replays so v1's code must be the one used
    async with runtime(store, _versioned("1.0.0", "2.0.0"), clock, execution_cache_size=0):
        await client.start_orchestration("v-5", "flow")
        await client.raise_event("v-4", "go", "old")
        await client.raise_event("v-5", "go", "new")
        assert await completed(client, "v-4") == "v1 1.0.0 old"
        assert await completed(client, "v-5") == "v2 2.0.0 new"


async def test_continue_as_new_moves_to_the_latest_version_unless_pinned(
    store: Provider, clock: VirtualClock, client: duro.Client
) -> None:
    def build(with_v2: bool) -> duro.Registry:
        registry = duro.Registry()

        @registry.orchestration(name="looper", version="1.0.0")
        async def looper_v1(ctx: duro.OrchestrationContext, pin: bool) -> str:
            await ctx.wait_for_event("go")
            if pin:
                ctx.continue_as_new(pin, version="1.0.0")
            ctx.continue_as_new(pin)

        if with_v2:

            @registry.orchestration(name="looper", version="2.0.0")
            async def looper_v2(ctx: duro.OrchestrationContext, pin: bool) -> str:
                return "upgraded"

        return registry

    async with runtime(store, build(False), clock):
        await client.start_orchestration("v-6", "looper", False)
        await client.start_orchestration("v-7", "looper", True)
        await wait_until(lambda: _running(client, "v-6"))
        await wait_until(lambda: _running(client, "v-7"))
    async with runtime(store, build(True), clock):
        await client.raise_event("v-6", "go")
        await client.raise_event("v-7", "go")
        assert await completed(client, "v-6") == "upgraded"
        await wait_until(lambda: _execution(client, "v-7", 2))
        status = await client.get_status("v-7")
    assert status.version == "1.0.0" and status.state is duro.State.RUNNING


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def _execution(client: duro.Client, instance_id: str, execution_id: int) -> bool:
    return (await client.get_status(instance_id)).execution_id == execution_id


async def test_unknown_version_waits_for_a_worker_that_has_it(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    async with runtime(store, _versioned("1.0.0"), clock):
        await client.start_orchestration("v-8", "flow", version="2.0.0")
        await client.start_orchestration("v-9", "flow", version="1.0.0")
        await history_has(client, "v-9", ActivityCompleted)  # the dispatcher is not stuck
        assert (await client.get_status("v-8")).state is duro.State.PENDING
    async with runtime(store, _versioned("1.0.0", "2.0.0"), clock):
        await clock.advance(5)  # past the abandon delay
        await client.raise_event("v-8", "go", "late")
        assert await completed(client, "v-8") == "v2 2.0.0 late"


async def test_sub_orchestration_can_request_a_version(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    registry = _versioned("1.0.0", "2.0.0")

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.schedule_sub_orchestration("flow", instance_id="v-child", version="1.0.0")

    async with runtime(store, registry, clock):
        await client.start_orchestration("v-10", "parent")
        await wait_until(lambda: _running(client, "v-child"))
        await client.raise_event("v-child", "go", "c")
        assert await completed(client, "v-10") == "v1 1.0.0 c"
