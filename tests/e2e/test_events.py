"""External events (wait_for_event) and FIFO mailboxes (dequeue_event).

Chosen semantics, pinned here: an event raised before anyone waits is buffered in history and
handed to the next wait for that name; several arrivals of one name are consumed in arrival
order; buffered ``wait_for_event`` events do not survive ``continue_as_new`` while unconsumed
``dequeue_event`` messages do.
"""

from __future__ import annotations

import msgspec
import pytest

import duro
from duro._messages import RaiseEventMessage
from duro.history import (
    ActivityCompleted,
    EventQueued,
    EventRaised,
    OrchestrationStarted,
)
from duro.providers import Provider, ScheduledMessage
from duro.testing import VirtualClock

from ._support import Calls, completed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


class Approval(msgspec.Struct):
    by: str
    amount: int


async def test_wait_for_event_returns_the_event_data(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("approval")

    async with runtime(store, registry, clock):
        await client.start_orchestration("e-1", waiter)
        await wait_until(lambda: _state_is(client, "e-1", duro.State.RUNNING), what="e-1 running")
        await client.raise_event("e-1", "approval", {"by": "ann", "ok": True})
        assert await completed(client, "e-1") == {"by": "ann", "ok": True}
    assert [e.name for e in of_type(await client.get_history("e-1"), EventRaised)] == ["approval"]


async def _state_is(client: duro.Client, instance_id: str, state: duro.State) -> bool:
    return (await client.get_status(instance_id)).state is state


async def test_event_raised_before_the_wait_is_not_lost(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def gate(ctx: duro.ActivityContext, _: None) -> None:
        return None

    @registry.orchestration
    async def late(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        first = await ctx.wait_for_event("first")
        await ctx.schedule_activity(gate)
        second = await ctx.wait_for_event("second")
        return [first, second]

    async with runtime(store, registry, clock):
        await client.start_orchestration("e-2", late)
        await client.raise_event("e-2", "second", 2)  # nobody waits for "second" yet
        await history_has(client, "e-2", EventRaised)
        await client.raise_event("e-2", "first", 1)
        assert await completed(client, "e-2") == [1, 2]
    history = await client.get_history("e-2")
    assert [e.name for e in of_type(history, EventRaised)] == ["second", "first"]
    assert len(of_type(history, ActivityCompleted)) == 1


async def test_repeated_events_of_one_name_are_consumed_in_arrival_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def collector(ctx: duro.OrchestrationContext, n: int) -> list[int]:
        return [await ctx.wait_for_event("tick") for _ in range(n)]

    async with runtime(store, registry, clock):
        await client.start_orchestration("e-3", collector, 4)
        for i in range(4):
            await client.raise_event("e-3", "tick", i)
        assert await completed(client, "e-3") == [0, 1, 2, 3]


async def test_event_data_decodes_into_the_requested_type(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def typed(ctx: duro.OrchestrationContext, _: None) -> str:
        approval = await ctx.wait_for_event("approval", type=Approval)
        assert isinstance(approval, Approval)
        return f"{approval.by}:{approval.amount * 2}"

    async with runtime(store, registry, clock):
        await client.start_orchestration("e-4", typed)
        await client.raise_event("e-4", "approval", Approval(by="bob", amount=21))
        assert await completed(client, "e-4") == "bob:42"


async def test_dequeue_event_is_strict_fifo(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def work(ctx: duro.ActivityContext, item: int) -> int:
        return item

    @registry.orchestration
    async def worker(ctx: duro.OrchestrationContext, n: int) -> list[int]:
        out = []
        for _ in range(n):
            item = await ctx.dequeue_event("jobs")
            out.append(await ctx.schedule_activity(work, item))
        return out

    async with runtime(store, registry, clock):
        await client.start_orchestration("q-1", worker, 6)
        for i in range(3):
            await client.enqueue_event("q-1", "jobs", i)
        await history_has(client, "q-1", ActivityCompleted, 1)
        for i in range(3, 6):
            await client.enqueue_event("q-1", "jobs", i)
        assert await completed(client, "q-1") == [0, 1, 2, 3, 4, 5]
    queued = of_type(await client.get_history("q-1"), EventQueued)
    assert [msgspec.json.decode(e.data) for e in queued] == [0, 1, 2, 3, 4, 5]


async def test_mailboxes_are_independent_per_queue_name(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def two(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        b = await ctx.dequeue_event("b")
        a = await ctx.dequeue_event("a")
        return [a, b]

    async with runtime(store, registry, clock):
        await client.start_orchestration("q-2", two)
        await client.enqueue_event("q-2", "a", "from-a")
        await client.enqueue_event("q-2", "b", "from-b")
        assert await completed(client, "q-2") == ["from-a", "from-b"]


async def test_unconsumed_queue_messages_survive_continue_as_new_in_order(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def drain(ctx: duro.OrchestrationContext, seen: list[int]) -> list[int]:
        item = await ctx.dequeue_event("jobs")
        seen = [*seen, item]
        if len(seen) == 4:
            return seen
        ctx.continue_as_new(seen)

    async with runtime(store, registry, clock):
        await client.start_orchestration("q-3", drain, [])
        for i in range(4):
            await client.enqueue_event("q-3", "jobs", i)
        assert await completed(client, "q-3") == [0, 1, 2, 3]
        status = await client.get_status("q-3")
    assert status.execution_id == 4
    started = of_type(await client.get_history("q-3", 1), OrchestrationStarted)
    assert started[0].carried_events == []


async def test_buffered_wait_for_event_arrivals_do_not_survive_continue_as_new(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def once(ctx: duro.OrchestrationContext, round_: int) -> object:
        if round_ == 0:
            await ctx.wait_for_event("go")
            ctx.continue_as_new(1)
        index, value = await ctx.select(ctx.wait_for_event("extra"), ctx.wait_for_event("end"))
        return [index, value]

    async with runtime(store, registry, clock):
        await client.start_orchestration("e-5", once, 0)
        await client.raise_event("e-5", "extra", "old")
        await client.raise_event("e-5", "go")
        await wait_until(lambda: _execution_is(client, "e-5", 2), what="second execution")
        await client.raise_event("e-5", "end", "fresh")
        assert await completed(client, "e-5") == [1, "fresh"]


async def _execution_is(client: duro.Client, instance_id: str, execution_id: int) -> bool:
    return (await client.get_status(instance_id)).execution_id == execution_id


async def test_events_for_missing_instances_raise_instance_not_found(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    with pytest.raises(duro.InstanceNotFoundError) as raised:
        await client.raise_event("ghost", "x", 1)
    assert raised.value.instance_id == "ghost"
    with pytest.raises(duro.InstanceNotFoundError):
        await client.enqueue_event("ghost", "q", 1)
    with pytest.raises(duro.InstanceNotFoundError):
        await client.cancel_orchestration("ghost")
    assert (await client.get_status("ghost")).state is duro.State.NOT_FOUND
    assert await client.list_instances() == []


async def test_event_for_a_completed_instance_is_refused_and_a_racing_one_dropped(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.orchestration
    async def quick(ctx: duro.OrchestrationContext, _: None) -> str:
        calls.hit("run")
        return "done"

    async with runtime(store, registry, clock):
        await client.start_orchestration("e-6", quick)
        await completed(client, "e-6")
        before = await client.get_history("e-6")
        with pytest.raises(duro.InstanceFinishedError, match="already completed"):
            await client.raise_event("e-6", "late", 1)
        # One sent by a client that looked while the instance still ran reaches the store.
        raced = RaiseEventMessage(instance_id="e-6", name="late", data=msgspec.json.encode(1))
        await store.enqueue_orchestrator_message(ScheduledMessage(message=raced))
        await wait_until(lambda: _queue_empty(client), what="late event consumed")
        status = await client.get_status("e-6")
    assert status.state is duro.State.COMPLETED and status.output == "done"
    assert await client.get_history("e-6") == before


async def _queue_empty(client: duro.Client) -> bool:
    depths = await client.queue_depths()
    return depths.orchestrator == 0 and depths.locked == 0
