"""join and select over durable futures resolve in history order, not polling order."""

from __future__ import annotations

import anyio
import pytest

import duro
from duro.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventRaised,
    SubOrchestrationScheduled,
    TaskCancelled,
)
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register_gated(registry: duro.Registry, gates: dict[str, anyio.Event], calls: Calls) -> None:
    """``gated(key)`` finishes only when the test sets ``gates[key]``, so tests pick the order."""

    @registry.activity
    async def gated(ctx: duro.ActivityContext, key: str) -> str:
        calls.hit(f"start:{key}")
        with anyio.CancelScope() as scope:
            gates.setdefault(key, anyio.Event())
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    await ctx.wait_cancelled()
                    calls.hit(f"cancelled:{key}")
                    scope.cancel()

                tg.start_soon(watch)
                await gates[key].wait()
                tg.cancel_scope.cancel()
        if key.startswith("fail"):
            raise RuntimeError(f"{key} failed")
        return key


async def test_join_returns_results_in_argument_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    gates: dict[str, anyio.Event] = {k: anyio.Event() for k in "abc"}
    calls = Calls()
    _register_gated(registry, gates, calls)

    @registry.orchestration
    async def fan(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        return await ctx.join([ctx.schedule_activity("gated", k) for k in "abc"])

    async with runtime(store, registry, clock):
        await client.start_orchestration("j-1", fan)
        await wait_until(lambda: all(calls[f"start:{k}"] for k in "abc"))
        for key in "cab":
            gates[key].set()
            await history_has(client, "j-1", ActivityCompleted, "cab".index(key) + 1)
        assert await completed(client, "j-1") == ["a", "b", "c"]
    done = of_type(await client.get_history("j-1"), ActivityCompleted)
    assert [e.seq for e in done] == [3, 1, 2]


async def test_join_of_nothing_returns_an_empty_list(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def empty(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        return await ctx.join([])

    async with runtime(store, registry, clock):
        await client.start_orchestration("j-2", empty)
        assert await completed(client, "j-2") == []


async def test_join_raises_the_first_failure_in_history_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    gates: dict[str, anyio.Event] = {k: anyio.Event() for k in ("fail-1", "fail-2", "ok")}
    calls = Calls()
    _register_gated(registry, gates, calls)

    @registry.orchestration
    async def fan(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            await ctx.join([ctx.schedule_activity("gated", k) for k in ("fail-1", "fail-2", "ok")])
        except duro.ActivityFailedError as exc:
            return exc.error_message
        return "no failure"

    async with runtime(store, registry, clock):
        await client.start_orchestration("j-3", fan)
        await wait_until(lambda: calls["start:fail-2"] == 1)
        gates["fail-2"].set()
        await wait_until(lambda: _has_failure(client, "j-3"))
        gates["fail-1"].set()
        gates["ok"].set()
        assert await completed(client, "j-3") == "fail-2 failed"


async def _has_failure(client: duro.Client, instance_id: str) -> bool:
    from duro.history import ActivityFailed

    history = await client.get_history(instance_id)
    return bool(of_type(history, ActivityFailed)) or (
        (await client.get_status(instance_id)).state.is_terminal
    )


async def test_join_with_return_exceptions_puts_failures_in_place(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    gates: dict[str, anyio.Event] = {}
    calls = Calls()
    _register_gated(registry, gates, calls)
    for key in ("a", "fail-b", "c"):
        gates[key] = anyio.Event()
        gates[key].set()

    @registry.orchestration
    async def fan(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        results = await ctx.join(
            [ctx.schedule_activity("gated", k) for k in ("a", "fail-b", "c")],
            return_exceptions=True,
        )
        return [
            f"{type(r).__name__}:{r.error_message}" if isinstance(r, BaseException) else r
            for r in results
        ]

    async with runtime(store, registry, clock):
        await client.start_orchestration("j-4", fan)
        assert await completed(client, "j-4") == ["a", "ActivityFailedError:fail-b failed", "c"]


async def test_select_returns_first_completion_in_history_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def first(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        index, value = await ctx.select(
            ctx.wait_for_event("a"), ctx.wait_for_event("b"), ctx.wait_for_event("c")
        )
        return [index, value]

    async with runtime(store, registry, clock):
        await client.start_orchestration("s-1", first)
        await client.raise_event("s-1", "c", "C")
        await client.raise_event("s-1", "a", "A")
        assert await completed(client, "s-1") == [2, "C"]
    assert next(e.name for e in of_type(await client.get_history("s-1"), EventRaised)) == "c"


async def test_select_over_already_buffered_events_picks_the_earliest_arrival(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def later(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        await ctx.wait_for_event("start")
        index, value = await ctx.select(ctx.wait_for_event("x"), ctx.wait_for_event("y"))
        return [index, value]

    async with runtime(store, registry, clock):
        await client.start_orchestration("s-2", later)
        await client.raise_event("s-2", "y", "Y")
        await client.raise_event("s-2", "x", "X")
        await history_has(client, "s-2", EventRaised, 2)
        await client.raise_event("s-2", "start")
        assert await completed(client, "s-2") == [1, "Y"]


async def test_select_loser_activity_is_cancelled_and_its_result_never_recorded(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    gates: dict[str, anyio.Event] = {k: anyio.Event() for k in ("fast", "slow")}
    calls = Calls()
    _register_gated(registry, gates, calls)

    @registry.orchestration
    async def race(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        index, value = await ctx.select(
            ctx.schedule_activity("gated", "slow"), ctx.schedule_activity("gated", "fast")
        )
        return [index, value]

    async with runtime(store, registry, clock):
        await client.start_orchestration("s-3", race)
        await wait_until(lambda: calls["start:slow"] == 1 and calls["start:fast"] == 1)
        gates["fast"].set()
        assert await completed(client, "s-3") == [1, "fast"]
        await wait_until(lambda: calls["cancelled:slow"] == 1, what="loser saw cancellation")
    history = await client.get_history("s-3")
    assert [e.target for e in of_type(history, TaskCancelled)] == [1]
    assert [e.seq for e in of_type(history, ActivityCompleted)] == [2]


async def test_select_loser_sub_orchestration_is_cancelled(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def waits_forever(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("never")

    @registry.orchestration
    async def race(ctx: duro.OrchestrationContext, _: None) -> int:
        index, _value = await ctx.select(
            ctx.schedule_sub_orchestration(waits_forever, instance_id="loser-child"),
            ctx.wait_for_event("win"),
        )
        return index

    async with runtime(store, registry, clock):
        await client.start_orchestration("s-4", race)
        await history_has(client, "s-4", SubOrchestrationScheduled)
        await wait_until(lambda: _state(client, "loser-child", duro.State.RUNNING))
        await client.raise_event("s-4", "win")
        assert await completed(client, "s-4") == 1
        error = await failed(client, "loser-child")
    assert error.category is duro.ErrorCategory.CANCELLED


async def _state(client: duro.Client, instance_id: str, state: duro.State) -> bool:
    return (await client.get_status(instance_id)).state is state


async def test_select_with_a_failing_winner_raises_its_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    gates: dict[str, anyio.Event] = {k: anyio.Event() for k in ("fail-now", "slow")}
    gates["fail-now"].set()
    calls = Calls()
    _register_gated(registry, gates, calls)

    @registry.orchestration
    async def race(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            await ctx.select(
                ctx.schedule_activity("gated", "slow"), ctx.schedule_activity("gated", "fail-now")
            )
        except duro.ActivityFailedError as exc:
            return exc.error_message
        return "no error"

    async with runtime(store, registry, clock):
        await client.start_orchestration("s-5", race)
        assert await completed(client, "s-5") == "fail-now failed"
        await wait_until(lambda: calls["cancelled:slow"] == 1)


async def test_join_of_activities_and_timers_completes_after_the_last(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def quick(ctx: duro.ActivityContext, n: int) -> int:
        return n

    @registry.orchestration
    async def mixed(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        return await ctx.join(
            [ctx.schedule_timer(60), ctx.schedule_activity(quick, 1), ctx.wait_for_event("e")]
        )

    async with runtime(store, registry, clock):
        await client.start_orchestration("j-5", mixed)
        await history_has(client, "j-5", ActivityCompleted)
        await client.raise_event("j-5", "e", "E")
        await history_has(client, "j-5", EventRaised)
        assert (await client.get_status("j-5")).state is duro.State.RUNNING
        await clock.advance(60)
        assert await completed(client, "j-5") == [None, 1, "E"]
    assert len(of_type(await client.get_history("j-5"), ActivityScheduled)) == 1


async def test_select_loser_wait_does_not_consume_a_buffered_event(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def probe(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        await ctx.wait_for_event("start")
        index, value = await ctx.select(ctx.wait_for_event("x"), ctx.wait_for_event("y"))
        loser = "y" if index == 0 else "x"
        # a zero timer resolves only in a later turn; a still-buffered event resolves at once
        again, leftover = await ctx.select(ctx.wait_for_event(loser), ctx.schedule_timer(0))
        return [value, again, leftover]

    async with runtime(store, registry, clock):
        await client.start_orchestration("s-6", probe)
        await client.raise_event("s-6", "x", "X")
        await client.raise_event("s-6", "y", "Y")
        await history_has(client, "s-6", EventRaised, 2)
        await client.raise_event("s-6", "start")
        value, again, leftover = await completed(client, "s-6")
    assert again == 0, "the losing wait swallowed its buffered event"
    assert {value, leftover} == {"X", "Y"}
