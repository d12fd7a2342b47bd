"""``Client.rewind_orchestration``: a FAILED instance runs on from before the step that failed
it; what succeeded keeps its recorded result (decision 0009)."""

from __future__ import annotations

import pytest

import duro
from duro.history import ActivityCompleted, ExecutionRewound, OrchestrationFailed
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, history_has, of_type, runtime

pytestmark = pytest.mark.anyio


class Switch:
    """Whether the flaky dependency is fixed yet (set by the test between runs)."""

    def __init__(self) -> None:
        self.fixed = False


def _register(registry: duro.Registry, calls: Calls, switch: Switch) -> None:
    @registry.activity
    async def reserve(ctx: duro.ActivityContext, item: str) -> str:
        calls.hit("reserve", item)
        return f"reserved {item}"

    @registry.activity
    async def charge(ctx: duro.ActivityContext, amount: int) -> str:
        calls.hit("charge", amount)
        if not switch.fixed:
            raise ConnectionError("payments are down")
        return f"charged {amount}"

    @registry.orchestration
    async def order(ctx: duro.OrchestrationContext, amount: int) -> list[str]:
        ctx.kv.set("stage", "reserving")
        reserved = await ctx.schedule_activity(reserve, "book")
        ctx.kv.set("stage", "charging")
        charged = await ctx.schedule_activity(charge, amount)
        return [reserved, charged]

    @registry.orchestration
    async def tally(ctx: duro.OrchestrationContext, amount: int) -> list[int]:
        seen = ctx.kv.get("charges", 0, type=int)  # read before this execution writes it
        ctx.kv.set("charges", seen + 1)
        await ctx.schedule_activity(charge, amount)
        return [seen, seen + 1]

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, amount: int) -> list[str]:
        first = await ctx.schedule_activity(reserve, "parent")
        child = await ctx.schedule_sub_orchestration(order, amount, instance_id="rw-child")
        return [first, *child]


async def test_a_failed_activity_runs_again_and_what_succeeded_is_kept(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls, switch = Calls(), Switch()
    _register(registry, calls, switch)
    async with runtime(store, registry, clock):
        await client.start_orchestration("rw-1", "order", 5)
        error = await failed(client, "rw-1")
        assert "payments are down" in error.message
        switch.fixed = True
        await client.rewind_orchestration("rw-1", reason="payments are back")
        await history_has(client, "rw-1", ExecutionRewound)
        assert await completed(client, "rw-1") == ["reserved book", "charged 5"]
    assert calls.log == ["book", 5, 5]  # reserve ran once; charge failed, then ran again
    history = await client.get_history("rw-1")
    [marker] = of_type(history, ExecutionRewound)
    assert marker.reason == "payments are back"
    undone = history[marker.undone_from - 1 : marker.undone_through]
    assert [type(e).__name__ for e in undone] == ["ActivityFailed", "OrchestrationFailed"]
    assert len(of_type(history, OrchestrationFailed)) == 1  # kept, as a record
    assert [e.execution_id for e in await client.list_executions("rw-1")] == [1]
    assert await client.get_value("rw-1", "stage") == "charging"
    # a rewound history still replays: the client's export runs through the replay checker
    exported = await client.export_history("rw-1")
    duro.testing.replay(registry, exported)


async def test_a_rewound_execution_replays_from_the_kv_it_started_with(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls, switch = Calls(), Switch()
    _register(registry, calls, switch)
    async with runtime(store, registry, clock):
        await client.start_orchestration("rw-kv", "tally", 7)
        await failed(client, "rw-kv")
        assert await client.get_value("rw-kv", "charges") == 1  # what the code wrote shows
        switch.fixed = True
        await client.rewind_orchestration("rw-kv")
        await history_has(client, "rw-kv", ExecutionRewound)
        # The replay reads the value the first run read, not the failed execution's write.
        assert await completed(client, "rw-kv") == [0, 1]
    assert await client.get_value("rw-kv", "charges") == 1


async def test_a_rewound_execution_shows_the_custom_status_of_the_part_it_keeps(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls, switch = Calls(), Switch()
    _register(registry, calls, switch)

    @registry.orchestration
    async def staged(ctx: duro.OrchestrationContext, amount: int) -> str:
        ctx.set_custom_status("charging")
        try:
            await ctx.schedule_activity("charge", amount)
        except duro.ActivityFailedError:
            ctx.set_custom_status("gave up")  # undone by the rewind
            raise
        await ctx.wait_for_event("shipped")
        return "done"

    async with runtime(store, registry, clock):
        await client.start_orchestration("rw-cs", staged, 4)
        await failed(client, "rw-cs")
        assert (await client.get_status("rw-cs")).custom_status == "gave up"
        switch.fixed = True
        await client.rewind_orchestration("rw-cs")
        await history_has(client, "rw-cs", ExecutionRewound)
        assert (await client.get_status("rw-cs")).custom_status == "charging"
        await client.raise_event("rw-cs", "shipped")
        assert await completed(client, "rw-cs") == "done"


async def test_a_rewound_parent_rewinds_its_failed_child(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls, switch = Calls(), Switch()
    _register(registry, calls, switch)
    async with runtime(store, registry, clock):
        await client.start_orchestration("rw-parent", "parent", 7)
        await failed(client, "rw-parent")
        await failed(client, "rw-child")
        switch.fixed = True
        await client.rewind_orchestration("rw-parent")
        await history_has(client, "rw-child", ExecutionRewound)
        assert await completed(client, "rw-parent") == [
            "reserved parent",
            "reserved book",
            "charged 7",
        ]
        assert await completed(client, "rw-child") == ["reserved book", "charged 7"]
    assert calls["reserve"] == 2 and calls["charge"] == 2
    assert len(of_type(await client.get_history("rw-child"), ExecutionRewound)) == 1
    assert len(of_type(await client.get_history("rw-parent"), ActivityCompleted)) == 1


async def test_an_instance_can_be_rewound_again_after_failing_again(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls, switch = Calls(), Switch()
    _register(registry, calls, switch)
    async with runtime(store, registry, clock):
        await client.start_orchestration("rw-2", "order", 3)
        await failed(client, "rw-2")
        await client.rewind_orchestration("rw-2")
        await history_has(client, "rw-2", OrchestrationFailed, 2)  # not fixed yet
        await failed(client, "rw-2")
        switch.fixed = True
        await client.rewind_orchestration("rw-2")
        await history_has(client, "rw-2", ExecutionRewound, 2)
        assert await completed(client, "rw-2") == ["reserved book", "charged 3"]
    assert calls.log == ["book", 3, 3, 3]
    assert len(of_type(await client.get_history("rw-2"), ExecutionRewound)) == 2


async def test_only_a_failed_instance_can_be_rewound(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls, switch = Calls(), Switch()
    switch.fixed = True
    _register(registry, calls, switch)
    async with runtime(store, registry, clock):
        await client.start_orchestration("rw-3", "order", 1)
        await completed(client, "rw-3")
    with pytest.raises(duro.InstanceNotFailedError, match="'rw-3' is completed, not failed"):
        await client.rewind_orchestration("rw-3")
    with pytest.raises(duro.InstanceNotFoundError):
        await client.rewind_orchestration("rw-nobody")
