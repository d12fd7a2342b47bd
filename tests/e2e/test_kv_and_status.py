"""The durable per-instance KV map and custom status, read by clients."""

from __future__ import annotations

import pytest

import duro
from duro.history import (
    CustomStatusSet,
    KvCleared,
    KvDeleted,
    KvSet,
)
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


async def test_kv_set_get_delete_items_and_clear(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def kv(ctx: duro.OrchestrationContext, _: None) -> dict[str, object]:
        ctx.kv.set("a", 1)
        ctx.kv.set("b", {"nested": [1, 2]})
        ctx.kv.set("a", 2)
        snapshot = ctx.kv.items()
        ctx.kv.delete("b")
        after_delete = ctx.kv.items()
        missing = ctx.kv.get("b", "default")
        await ctx.wait_for_event("clear")
        ctx.kv.clear()
        ctx.kv.set("final", True)
        return {
            "snapshot": snapshot,
            "after_delete": after_delete,
            "missing": missing,
            "after_clear": ctx.kv.items(),
        }

    async with runtime(store, registry, clock):
        await client.start_orchestration("kv-1", kv)
        await history_has(client, "kv-1", KvDeleted)
        assert await client.get_value("kv-1", "a") == 2
        assert await client.get_value("kv-1", "b") is None
        assert await client.get_values("kv-1") == {"a": 2}
        await client.raise_event("kv-1", "clear")
        assert await completed(client, "kv-1") == {
            "snapshot": {"a": 2, "b": {"nested": [1, 2]}},
            "after_delete": {"a": 2},
            "missing": "default",
            "after_clear": {"final": True},
        }
    assert await client.get_values("kv-1") == {"final": True}
    assert await client.get_value("kv-1", "a") is None
    history = await client.get_history("kv-1")
    assert [e.key for e in of_type(history, KvSet)] == ["a", "b", "a", "final"]
    assert len(of_type(history, KvCleared)) == 1


async def test_kv_values_replay_without_new_writes(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def counter(ctx: duro.OrchestrationContext, _: None) -> int:
        for _ in range(3):
            ctx.kv.set("count", ctx.kv.get("count", 0) + 1)
            await ctx.wait_for_event("tick")
        return ctx.kv.get("count")

    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("kv-2", counter)
        for _ in range(3):
            await client.raise_event("kv-2", "tick")
        assert await completed(client, "kv-2") == 3
    assert len(of_type(await client.get_history("kv-2"), KvSet)) == 3
    assert await client.get_value("kv-2", "count") == 3


async def test_kv_limits_raise_payload_error_in_the_orchestration(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def greedy(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        errors = []
        for i in range(100):
            ctx.kv.set(f"k{i}", i)
        try:
            ctx.kv.set("one-too-many", 0)
        except duro.PayloadError:
            errors.append("keys")
        try:
            ctx.kv.set("big", "x" * (65 * 1024))
        except duro.PayloadError:
            errors.append("size")
        try:
            ctx.kv.set("bad", object())
        except duro.PayloadError:
            errors.append("type")
        return errors

    async with runtime(store, registry, clock):
        await client.start_orchestration("kv-3", greedy)
        assert await completed(client, "kv-3") == ["keys", "size", "type"]
    assert len(await client.get_values("kv-3")) == 100


async def test_custom_status_is_visible_to_clients_while_running(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def phases(ctx: duro.OrchestrationContext, _: None) -> str:
        ctx.set_custom_status({"phase": "waiting"})
        await ctx.wait_for_event("next")
        ctx.set_custom_status({"phase": "finishing"})
        await ctx.wait_for_event("next")
        ctx.set_custom_status(None)
        return "done"

    async with runtime(store, registry, clock):
        await client.start_orchestration("cs-1", phases)
        status = await client.wait_for_status_change("cs-1", None, timeout=5)
        while status.custom_status is None:
            status = await client.wait_for_status_change("cs-1", status, timeout=5)
        assert status.custom_status == {"phase": "waiting"}
        await client.raise_event("cs-1", "next")
        status = await client.wait_for_status_change("cs-1", status, timeout=5)
        assert status.custom_status == {"phase": "finishing"}
        assert status.state is duro.State.RUNNING
        await client.raise_event("cs-1", "next")
        assert await completed(client, "cs-1") == "done"
    final = await client.get_status("cs-1")
    assert final.custom_status is None
    assert len(of_type(await client.get_history("cs-1"), CustomStatusSet)) == 3


async def test_wait_for_status_change_times_out_with_a_typed_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def idle(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("never")

    async with runtime(store, registry, clock):
        await client.start_orchestration("cs-2", idle)
        await wait_until(lambda: _running(client, "cs-2"))
        status = await client.get_status("cs-2")
        with pytest.raises(duro.WaitTimeoutError):
            await client.wait_for_status_change("cs-2", status, timeout=0.05)
        with pytest.raises(TimeoutError):
            await client.wait_for_orchestration("cs-2", timeout=0.05)


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_oversized_custom_status_raises_payload_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def chatty(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            ctx.set_custom_status("x" * (65 * 1024))
        except duro.PayloadError:
            return "rejected"
        return "accepted"

    async with runtime(store, registry, clock):
        await client.start_orchestration("cs-3", chatty)
        assert await completed(client, "cs-3") == "rejected"
    assert (await client.get_status("cs-3")).custom_status is None


async def test_new_guid_is_unique_per_call_and_stable_on_replay(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    seen: list[tuple[str, str]] = []

    @registry.orchestration
    async def guids(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        first, second = str(ctx.new_guid()), str(ctx.new_guid())
        seen.append((first, second))
        await ctx.wait_for_event("go")
        return [first, second]

    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("g-1", guids)
        await client.start_orchestration("g-2", guids)
        await wait_until(lambda: len(seen) >= 2)
        await client.raise_event("g-1", "go")
        await client.raise_event("g-2", "go")
        first = await completed(client, "g-1")
        second = await completed(client, "g-2")
    assert first[0] != first[1]
    assert set(first).isdisjoint(second)
    assert seen.count(tuple(first)) >= 2  # replayed with identical values
