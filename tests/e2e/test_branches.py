"""Branches: join and select over whole ``async def`` sub-flows that use the context (issue 6)."""

from __future__ import annotations

import anyio
import pytest

import duro
from duro.history import (
    ActivityCompleted,
    ActivityScheduled,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
)
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register_shipping(registry: duro.Registry, calls: Calls) -> None:
    @registry.activity
    async def reserve(ctx: duro.ActivityContext, item: str) -> str:
        calls.hit(f"reserve:{item}")
        return f"r-{item}"

    @registry.activity
    async def dispatch(ctx: duro.ActivityContext, reserved: str) -> str:
        calls.hit(f"dispatch:{reserved}")
        return f"shipped {reserved}"


async def ship(ctx: duro.OrchestrationContext, item: str) -> str:
    reserved = await ctx.schedule_activity("reserve", item)
    await ctx.schedule_timer(1)
    return await ctx.schedule_activity("dispatch", reserved)


async def test_join_over_multi_step_branches_returns_results_in_argument_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_shipping(registry, calls)

    @registry.orchestration
    async def order(ctx: duro.OrchestrationContext, items: list[str]) -> list[str]:
        return await ctx.join([ship(ctx, i) for i in items])

    async with runtime(store, registry, clock):
        await client.start_orchestration("b-1", order, ["a", "b", "c"])
        await history_has(client, "b-1", TimerCreated, 3)
        await clock.advance(1)
        assert await completed(client, "b-1") == ["shipped r-a", "shipped r-b", "shipped r-c"]
    assert all(calls[f"reserve:{i}"] == 1 and calls[f"dispatch:r-{i}"] == 1 for i in "abc")


async def test_join_accepts_a_mix_of_branches_and_futures(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_shipping(registry, calls)

    @registry.orchestration
    async def mixed(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        return await ctx.join(
            [ship(ctx, "x"), ctx.schedule_activity("reserve", "y"), ctx.wait_for_event("e")]
        )

    async with runtime(store, registry, clock):
        await client.start_orchestration("b-2", mixed)
        await history_has(client, "b-2", TimerCreated)
        await client.raise_event("b-2", "e", "E")
        await clock.advance(1)
        assert await completed(client, "b-2") == ["shipped r-x", "r-y", "E"]


async def test_branch_actions_are_recorded_in_the_order_branches_ran(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    gates = {k: anyio.Event() for k in ("a1", "b1")}

    @registry.activity
    async def step(ctx: duro.ActivityContext, key: str) -> str:
        if key in gates:
            await gates[key].wait()
        return key

    async def branch(ctx: duro.OrchestrationContext, name: str) -> str:
        first = await ctx.schedule_activity(step, f"{name}1")
        second = await ctx.schedule_activity(step, f"{name}2")
        return first + second

    @registry.orchestration
    async def two(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        return await ctx.join([branch(ctx, "a"), branch(ctx, "b")])

    # every turn replays from history: interleaving must be reproduced exactly
    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("b-3", two)
        await history_has(client, "b-3", ActivityScheduled, 2)
        gates["b1"].set()
        await history_has(client, "b-3", ActivityScheduled, 3)
        gates["a1"].set()
        assert await completed(client, "b-3") == ["a1a2", "b1b2"]
    scheduled = of_type(await client.get_history("b-3"), ActivityScheduled)
    assert [msgspec_decode(e.input) for e in scheduled] == ["a1", "b1", "b2", "a2"]


def msgspec_decode(raw: object) -> object:
    import msgspec

    return msgspec.json.decode(bytes(raw))  # type: ignore[arg-type]


async def test_branches_nest(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def leaf(ctx: duro.ActivityContext, n: int) -> int:
        return n

    async def pair(ctx: duro.OrchestrationContext, base: int) -> int:
        values = await ctx.join([ctx.schedule_activity(leaf, base), inner(ctx, base + 1)])
        return sum(values)

    async def inner(ctx: duro.OrchestrationContext, n: int) -> int:
        _index, value = await ctx.select(
            ctx.schedule_activity(leaf, n), ctx.wait_for_event("never")
        )
        return value * 10

    @registry.orchestration
    async def nested(ctx: duro.OrchestrationContext, _: None) -> list[int]:
        return await ctx.join([pair(ctx, 1), pair(ctx, 5)])

    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("b-4", nested)
        assert await completed(client, "b-4") == [1 + 20, 5 + 60]


async def test_failing_branch_fails_the_join_with_its_own_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_shipping(registry, calls)

    async def broken(ctx: duro.OrchestrationContext) -> str:
        await ctx.schedule_activity("reserve", "z")
        raise LookupError("branch gave up")

    @registry.orchestration
    async def caught(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            await ctx.join([ctx.wait_for_event("never"), broken(ctx)])
        except LookupError as exc:
            return f"caught {exc}"
        return "no error"

    @registry.orchestration
    async def uncaught(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.join([ctx.wait_for_event("never"), broken(ctx)])

    @registry.orchestration
    async def in_place(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        results = await ctx.join([ship(ctx, "q"), broken(ctx)], return_exceptions=True)
        return [r if isinstance(r, str) else f"{type(r).__name__}: {r}" for r in results]

    async with runtime(store, registry, clock):
        await client.start_orchestration("b-5", caught)
        await client.start_orchestration("b-6", uncaught)
        await client.start_orchestration("b-7", in_place)
        assert await completed(client, "b-5") == "caught branch gave up"
        error = await failed(client, "b-6")
        await history_has(client, "b-7", TimerCreated)
        await clock.advance(1)
        assert await completed(client, "b-7") == ["shipped r-q", "LookupError: branch gave up"]
    assert error.error_type == "LookupError" and error.message == "branch gave up"
    assert error.category is duro.ErrorCategory.APPLICATION


async def test_select_returns_first_branch_to_finish_and_times_out_with_a_timer(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_shipping(registry, calls)

    @registry.orchestration
    async def fastest(ctx: duro.OrchestrationContext, deadline: float) -> str:
        index, value = await ctx.select(ship(ctx, "a"), ctx.schedule_timer(deadline))
        return value if index == 0 else "timed out"

    async with runtime(store, registry, clock):
        await client.start_orchestration("b-8", fastest, 30)
        await client.start_orchestration("b-9", fastest, 0.5)
        await history_has(client, "b-8", TimerCreated, 2)
        await history_has(client, "b-9", TimerCreated, 2)
        await clock.advance(1)
        assert await completed(client, "b-8") == "shipped r-a"
        assert await completed(client, "b-9") == "timed out"
    # the losing branch of b-9 never dispatched
    assert not [
        e
        for e in of_type(await client.get_history("b-9"), ActivityScheduled)
        if e.name == "dispatch"
    ]


async def test_select_loser_branch_is_cancelled_with_everything_it_started(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    hold = anyio.Event()

    @registry.activity
    async def held(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("held:start")
        with anyio.move_on_after(10):
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    await ctx.wait_cancelled()
                    calls.hit("held:cancelled")
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await hold.wait()
                tg.cancel_scope.cancel()
        return "held"

    @registry.activity
    async def after(ctx: duro.ActivityContext, _: None) -> None:
        calls.hit("after")

    @registry.orchestration
    async def child(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("never")

    async def loser(ctx: duro.OrchestrationContext) -> str:
        await ctx.join(
            [
                ctx.schedule_activity(held),
                ctx.schedule_sub_orchestration(child, instance_id="loser-kid"),
                ctx.schedule_timer(5),
            ]
        )
        await ctx.schedule_activity(after)
        return "loser finished"

    async def winner(ctx: duro.OrchestrationContext) -> str:
        return await ctx.wait_for_event("win")

    @registry.orchestration
    async def race(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        index, value = await ctx.select(loser(ctx), winner(ctx))
        await ctx.schedule_timer(10)  # keep running past the loser's timer
        return [index, value]

    async with runtime(store, registry, clock):
        await client.start_orchestration("b-10", race)
        await history_has(client, "b-10", SubOrchestrationScheduled)
        await wait_until(lambda: calls["held:start"] == 1)
        await wait_until(lambda: _running(client, "loser-kid"))
        await client.raise_event("b-10", "win", "W")
        await history_has(client, "b-10", TimerCreated, 2)
        await wait_until(lambda: calls["held:cancelled"] == 1, what="held saw cancellation")
        assert (await failed(client, "loser-kid")).category is duro.ErrorCategory.CANCELLED
        hold.set()
        await clock.advance(10)
        assert await completed(client, "b-10") == [1, "W"]
    history = await client.get_history("b-10")
    scheduled = {
        e.seq: e for e in history if isinstance(e, ActivityScheduled | SubOrchestrationScheduled)
    }
    cancelled = {e.target for e in of_type(history, TaskCancelled)}
    assert cancelled == set(scheduled)  # the activity and the sub-orchestration
    assert calls["after"] == 0
    assert not of_type(history, ActivityCompleted)
    assert [e.name for e in of_type(history, ActivityScheduled)] == ["held"]


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_branches_resume_after_a_runtime_restart_without_rerunning_steps(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_shipping(registry, calls)

    @registry.orchestration
    async def order(ctx: duro.OrchestrationContext, items: list[str]) -> list[str]:
        return await ctx.join([ship(ctx, i) for i in items])

    async with runtime(store, registry, clock):
        await client.start_orchestration("b-11", order, ["a", "b"])
        await history_has(client, "b-11", TimerCreated, 2)
    await clock.advance(1)
    async with runtime(store, registry, clock):
        assert await completed(client, "b-11") == ["shipped r-a", "shipped r-b"]
    assert calls.counts == {
        "reserve:a": 1,
        "reserve:b": 1,
        "dispatch:r-a": 1,
        "dispatch:r-b": 1,
    }


async def test_reordering_branches_in_code_is_reported_as_nondeterminism(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    def build(order: tuple[str, str]) -> duro.Registry:
        registry = duro.Registry()

        @registry.activity
        async def work_a(ctx: duro.ActivityContext, key: str) -> str:
            return key

        @registry.activity
        async def work_b(ctx: duro.ActivityContext, key: str) -> str:
            return key

        async def branch(ctx: duro.OrchestrationContext, key: str) -> str:
            await ctx.schedule_activity(f"work_{key}", key)
            return await ctx.wait_for_event(key)

        @registry.orchestration
        async def pair(ctx: duro.OrchestrationContext, _: None) -> list[str]:
            return await ctx.join([branch(ctx, k) for k in order])

        return registry

    async with runtime(store, build(("a", "b")), clock):
        await client.start_orchestration("b-12", "pair")
        await history_has(client, "b-12", ActivityCompleted, 2)
    async with runtime(store, build(("b", "a")), clock, execution_cache_size=0):
        await client.raise_event("b-12", "a", "A")
        error = await failed(client, "b-12")
    assert error.category is duro.ErrorCategory.CONFIGURATION
    assert error.error_type == "NondeterminismError"
    assert "'work_a'" in error.message and "'work_b'" in error.message
