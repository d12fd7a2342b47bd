"""``Client.export_history`` on every store: an exported history replays with the code that
recorded it, from the KV the execution started with."""

from __future__ import annotations

import pytest

import duro
from duro.history import EventRaised, KvSet
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import failed, history_has, runtime

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.activity
    async def charge(ctx: duro.ActivityContext, count: int) -> int:
        raise ConnectionError("payments are down")

    @registry.orchestration
    async def tally(ctx: duro.OrchestrationContext) -> int:
        seen = ctx.kv.get("count", 0, type=int)  # read before this execution writes it
        ctx.kv.set("count", seen + 1)
        await ctx.wait_for_event("go")
        return await ctx.schedule_activity(charge, seen)


async def test_a_running_and_a_failed_instance_export_histories_that_replay_as_recorded(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        for instance_id in ("running", "failing"):
            await client.start_orchestration(instance_id, "tally")
            await history_has(client, instance_id, KvSet)
        await client.raise_event("failing", "go")
        await history_has(client, "failing", EventRaised)
        await failed(client, "failing")
    for instance_id in ("running", "failing"):
        assert await client.get_value(instance_id, "count") == 1  # what the code wrote
        exported = await client.export_history(instance_id)
        duro.testing.replay(registry, exported)  # no divergence: seen is 0 again
        assert exported.kv == {}  # what the execution started with
