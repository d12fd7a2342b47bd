"""Branches (coroutines inside join/select) interleave deterministically by history."""

from __future__ import annotations

from typing import Any

import msgspec

import duro
from duro._history import ActivityScheduled, SubOrchestrationScheduled, TaskCancelled, TimerCreated
from duro._messages import CancelOrchestrationMessage
from duro._status import ExecutionStatus

from .histories import completed, failed, kinds, start, timer_fired, turn

registry = duro.Registry()


@registry.activity
async def reserve(ctx: duro.ActivityContext, item: str) -> str:
    return f"r-{item}"


@registry.activity
async def dispatch(ctx: duro.ActivityContext, reserved: str) -> str:
    return f"d-{reserved}"


async def ship(ctx: duro.OrchestrationContext, item: str) -> str:
    reserved = await ctx.schedule_activity(reserve, item)
    await ctx.schedule_timer(1)
    return await ctx.schedule_activity(dispatch, reserved)


@registry.orchestration
async def order(ctx: duro.OrchestrationContext, items: list[str]) -> list[str]:
    return await ctx.join([ship(ctx, i) for i in items])


@registry.orchestration
async def fastest(ctx: duro.OrchestrationContext, _: None) -> str:
    index, value = await ctx.select(ship(ctx, "a"), ctx.schedule_timer(30))
    return value if index == 0 else "timed out"


@registry.orchestration
async def child(ctx: duro.OrchestrationContext, _: None) -> None:
    await ctx.schedule_timer(100)


async def nested(ctx: duro.OrchestrationContext, tag: str) -> list[str]:
    return await ctx.join([ship(ctx, f"{tag}1"), ship(ctx, f"{tag}2")])


@registry.orchestration
async def nesting(ctx: duro.OrchestrationContext, _: None) -> list[Any]:
    return await ctx.join([nested(ctx, "x"), ship(ctx, "y")])


@registry.orchestration
async def with_child(ctx: duro.OrchestrationContext, _: None) -> str:
    async def branch() -> None:
        await ctx.schedule_sub_orchestration(child)

    index, _value = await ctx.select(branch(), ctx.schedule_timer(5))
    return str(index)


def scheduled(decision: Any) -> list[tuple[str, str]]:
    return [
        (e.name, msgspec.json.decode(e.input))
        for e in decision.changes.new_events
        if isinstance(e, ActivityScheduled)
    ]


def test_branches_start_eagerly_in_argument_order() -> None:
    decision = turn(registry, None, [start("order", ["a", "b", "c"])])
    assert scheduled(decision) == [("reserve", "a"), ("reserve", "b"), ("reserve", "c")]


def test_branches_advance_in_the_order_their_completions_reach_history() -> None:
    first = turn(registry, None, [start("order", ["a", "b"])])
    history = first.changes.new_events
    # b's reservation completes first: b's timer must be recorded before a's.
    decision = turn(registry, history, [completed(2, "r-b"), completed(1, "r-a")])
    timers = [e.seq for e in decision.changes.new_events if isinstance(e, TimerCreated)]
    assert timers == [3, 4]
    assert kinds(decision) == ["ActivityCompleted", "TimerCreated"] * 2


def test_branch_history_replays_identically() -> None:
    h = turn(registry, None, [start("order", ["a", "b"])]).changes.new_events
    h += turn(registry, h, [completed(2, "r-b"), completed(1, "r-a")]).changes.new_events
    h += turn(registry, h, [timer_fired(4), timer_fired(3)]).changes.new_events
    last = turn(registry, h, [completed(5, "d-r-a"), completed(6, "d-r-b")])
    assert last.changes.execution_status is ExecutionStatus.COMPLETED
    assert msgspec.json.decode(last.changes.output) == ["d-r-a", "d-r-b"]
    # Rebuilding from the full history (no cache) gives the same decision.
    again = turn(registry, h, [completed(5, "d-r-a"), completed(6, "d-r-b")])
    assert again.changes.new_events == last.changes.new_events


def test_reordering_branch_actions_is_reported_as_nondeterminism() -> None:
    swapped = duro.Registry()
    swapped.activity(reserve)
    swapped.activity(dispatch)

    async def ship_other(ctx: duro.OrchestrationContext, item: str) -> str:
        await ctx.schedule_timer(1)  # the code now waits before reserving
        return await ctx.schedule_activity(reserve, item)

    @swapped.orchestration(name="order")
    async def order_v2(ctx: duro.OrchestrationContext, items: list[str]) -> list[str]:
        return await ctx.join([ship_other(ctx, i) for i in items])

    history = turn(registry, None, [start("order", ["a"])]).changes.new_events
    decision = turn(swapped, history, [completed(1, "r-a")])
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "NondeterminismError"


def test_nested_branches_join_in_argument_order() -> None:
    decision = turn(registry, None, [start("nesting")])
    assert scheduled(decision) == [("reserve", "x1"), ("reserve", "x2"), ("reserve", "y")]


def test_a_failing_branch_fails_the_join_with_its_error() -> None:
    history = turn(registry, None, [start("order", ["a", "b"])]).changes.new_events
    decision = turn(registry, history, [failed(2, "out of stock")])
    assert decision.changes.execution_status is ExecutionStatus.FAILED
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "ActivityFailedError"
    assert "out of stock" in decision.changes.error.message


def test_select_cancels_the_losing_branch_and_records_nothing_it_would_do_later() -> None:
    # Arguments evaluate first: the 30 s timer is seq 1, the branch's reserve seq 2.
    history = turn(registry, None, [start("fastest")]).changes.new_events
    # The branch reserved and sits in its own timer (seq 3) when the 30 s timer wins.
    history += turn(registry, history, [completed(2, "r-a")]).changes.new_events
    decision = turn(registry, history, [timer_fired(1, 30_000), timer_fired(3)])
    assert decision.changes.execution_status is ExecutionStatus.COMPLETED
    assert msgspec.json.decode(decision.changes.output) == "timed out"
    assert not any(isinstance(e, ActivityScheduled) for e in decision.changes.new_events)


def test_select_loser_branch_activity_gets_cancellation() -> None:
    history = turn(registry, None, [start("fastest")]).changes.new_events
    decision = turn(registry, history, [timer_fired(1, 30_000)])
    cancelled = [e.target for e in decision.changes.new_events if isinstance(e, TaskCancelled)]
    assert cancelled == [2]
    assert decision.changes.cancelled_activities == [2]


def test_select_loser_branch_sub_orchestration_is_cancelled() -> None:
    history = turn(registry, None, [start("with_child")]).changes.new_events
    [sub] = [e for e in history if isinstance(e, SubOrchestrationScheduled)]
    decision = turn(registry, history, [timer_fired(1, 5000)])
    cancels = [
        s.message
        for s in decision.changes.orchestrator_messages
        if isinstance(s.message, CancelOrchestrationMessage)
    ]
    assert [c.instance_id for c in cancels] == [sub.instance_id]
