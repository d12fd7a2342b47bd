"""KV between instances: ``ctx.kv.get_from`` (recorded), ``Client.wait_for_value``,
``Client.get_values(with_updated_at=True)`` and ``ctx.kv.prune``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import duro
from duro.history import ActivityCompleted, ActivityScheduled, KvDeleted
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, failed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.orchestration
    async def publisher(ctx: duro.OrchestrationContext, _: None) -> None:
        ctx.kv.set("price", 1)
        await ctx.wait_for_event("next")
        ctx.kv.set("price", 2)
        await ctx.wait_for_event("done")

    @registry.orchestration
    async def reader(ctx: duro.OrchestrationContext, source: str) -> list[object]:
        first = await ctx.kv.get_from(source, "price", type=int)
        await ctx.wait_for_event("go")
        second = await ctx.kv.get_from(source, "price", 0, type=int)
        missing = await ctx.kv.get_from(source, "nothing", "default")
        nobody = await ctx.kv.get_from("no-such-instance", "price")
        return [first, second, missing, nobody]


async def test_get_from_reads_another_instance_and_replay_keeps_the_recorded_value(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("pub", "publisher")
        assert await client.wait_for_value("pub", "price", type=int) == 1
        await client.start_orchestration("rdr", "reader", "pub")
        await history_has(client, "rdr", ActivityCompleted)
        await client.raise_event("pub", "next")
        await wait_until(lambda: _price_is(client, 2), what="the price to change")
        # Replaying the first read serves the recorded 1, though the publisher now holds 2.
        await client.raise_event("rdr", "go")
        assert await completed(client, "rdr") == [1, 2, "default", None]
        await client.raise_event("pub", "done")
    reads = of_type(await client.get_history("rdr"), ActivityScheduled)
    assert [e.name for e in reads] == ["duro:kv.get_from"] * 4


async def _price_is(client: duro.Client, value: int) -> bool:
    return await client.get_value("pub", "price") == value


async def test_get_from_rejects_bad_ids_and_keys_in_the_orchestration(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def bad(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.kv.get_from("bad id with spaces", "k")

    async with runtime(store, registry, clock):
        await client.start_orchestration("kv-bad", bad)
        error = await failed(client, "kv-bad")
    assert error.error_type == "InvalidInstanceIdError"


async def test_wait_for_value_returns_once_set_and_times_out_with_a_typed_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    with pytest.raises(duro.WaitTimeoutError, match=r"'later' set no KV value 'price'.*not_found"):
        await client.wait_for_value("later", "price", timeout=0.05)
    async with runtime(store, registry, clock):
        await client.start_orchestration("later", "publisher")
        assert await client.wait_for_value("later", "price", timeout=timedelta(seconds=30)) == 1
        with pytest.raises(duro.WaitTimeoutError, match=r"'other'.*\(state: running\)"):
            await client.wait_for_value("later", "other", timeout=0.05)
        await client.raise_event("later", "next")
        await client.raise_event("later", "done")
        await completed(client, "later")


async def test_get_values_reports_when_each_key_was_set(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def stamps(ctx: duro.OrchestrationContext, _: None) -> None:
        ctx.kv.set("a", "first")
        await ctx.schedule_timer(10)
        ctx.kv.set("b", "second")

    start = datetime.fromtimestamp(clock.now_ms() / 1000, UTC)
    async with runtime(store, registry, clock):
        await client.start_orchestration("stamps", stamps)
        await wait_until(lambda: _has_timer(store), what="the timer")
        await clock.advance(10)
        await completed(client, "stamps")
    values = await client.get_values("stamps", with_updated_at=True)
    assert values == {
        "a": duro.KvValue(value="first", updated_at=start),
        "b": duro.KvValue(value="second", updated_at=start + timedelta(seconds=10)),
    }
    assert await client.get_values("stamps") == {"a": "first", "b": "second"}


async def _has_timer(store: Provider) -> bool:
    return (await store.queue_depths()).timers > 0


async def test_prune_deletes_keys_set_before_a_time_across_continue_as_new(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def tidy(ctx: duro.OrchestrationContext, round: int) -> object:
        if round == 1:
            ctx.kv.set("old", 1)
            ctx.continue_as_new(2)
        await ctx.schedule_timer(100)
        ctx.kv.set("new", 2)
        pruned = ctx.kv.prune(updated_before=ctx.utc_now() - timedelta(seconds=50))
        await ctx.schedule_timer(1)  # the next turn replays the prune
        return [pruned, ctx.kv.keys()]

    @registry.orchestration
    async def naive(ctx: duro.OrchestrationContext, _: None) -> int:
        return ctx.kv.prune(updated_before=datetime(2020, 1, 1))

    async with runtime(store, registry, clock):
        await client.start_orchestration("tidy", tidy, 1)
        await client.start_orchestration("naive", naive)
        for _ in range(2):
            await wait_until(lambda: _has_timer(store), what="a timer")
            await clock.advance(100)
        assert await completed(client, "tidy") == [1, ["new"]]
        error = await failed(client, "naive")
    assert error.error_type == "TypeError" and "timezone-aware datetime" in error.message
    assert [e.key for e in of_type(await client.get_history("tidy"), KvDeleted)] == ["old"]
    assert await client.get_values("tidy") == {"new": 2}
