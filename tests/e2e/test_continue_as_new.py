"""continue_as_new: a fresh execution with empty history, ending the current one at once."""

from __future__ import annotations

import pytest

import duro
from duro.history import ContinuedAsNew, OrchestrationStarted
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, of_type, runtime

pytestmark = pytest.mark.anyio


async def test_continue_as_new_runs_a_loop_as_successive_executions(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def step(ctx: duro.ActivityContext, n: int) -> int:
        calls.hit("step")
        return n + 1

    @registry.orchestration
    async def counter(ctx: duro.OrchestrationContext, n: int) -> dict[str, int]:
        n = await ctx.schedule_activity(step, n)
        if n < 5:
            ctx.continue_as_new(n)
        return {"n": n, "execution": ctx.execution_id}

    async with runtime(store, registry, clock):
        await client.start_orchestration("can-1", counter, 0)
        assert await completed(client, "can-1") == {"n": 5, "execution": 5}
    assert calls["step"] == 5
    status = await client.get_status("can-1")
    assert status.execution_id == 5
    current = await client.get_history("can-1")
    assert isinstance(current[0], OrchestrationStarted)
    assert len(of_type(current, OrchestrationStarted)) == 1
    first = await client.get_history("can-1", 1)
    assert isinstance(first[-1], ContinuedAsNew)


async def test_no_code_after_continue_as_new_runs(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def side_effect(ctx: duro.ActivityContext, _: None) -> None:
        calls.hit("side_effect")

    @registry.orchestration
    async def once(ctx: duro.OrchestrationContext, again: bool) -> str:
        if again:
            try:
                ctx.continue_as_new(False)
            except Exception:  # user code cannot swallow it
                calls.hit("swallowed")
            calls.hit("after")
            await ctx.schedule_activity(side_effect)
        return "second"

    async with runtime(store, registry, clock):
        await client.start_orchestration("can-2", once, True)
        assert await completed(client, "can-2") == "second"
    assert calls.counts == {}


async def test_continue_as_new_carries_kv_and_custom_status(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def carry(ctx: duro.OrchestrationContext, n: int) -> list[object]:
        if n == 0:
            ctx.kv.set("first", "kept")
            ctx.set_custom_status({"phase": "one"})
            ctx.continue_as_new(1)
        return [ctx.kv.get("first"), n]

    async with runtime(store, registry, clock):
        await client.start_orchestration("can-3", carry, 0)
        assert await completed(client, "can-3") == ["kept", 1]
        status = await client.get_status("can-3")
    assert status.custom_status == {"phase": "one"}
    assert await client.get_value("can-3", "first") == "kept"


async def test_continue_as_new_as_a_sub_orchestration_reports_the_final_result_to_the_parent(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def looping_child(ctx: duro.OrchestrationContext, n: int) -> int:
        if n < 3:
            ctx.continue_as_new(n + 1)
        return n * 100

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_sub_orchestration(looping_child, 0, instance_id="looper")

    async with runtime(store, registry, clock):
        await client.start_orchestration("can-4", parent)
        assert await completed(client, "can-4") == 300
    assert (await client.get_status("looper")).execution_id == 4


async def test_stale_activity_result_from_a_previous_execution_is_ignored(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def slow(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("slow")
        return "stale"

    @registry.orchestration
    async def restart(ctx: duro.OrchestrationContext, first: bool) -> object:
        if first:
            ctx.schedule_activity(slow)  # never awaited: the execution moves on
            ctx.continue_as_new(False)
        return await ctx.wait_for_event("value")

    async with runtime(store, registry, clock):
        await client.start_orchestration("can-5", restart, True)
        await client.raise_event("can-5", "value", "fresh")
        assert await completed(client, "can-5") == "fresh"
