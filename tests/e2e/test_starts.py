"""Idempotent starts (``if_exists=``) and ``start_with_event``, end to end."""

from __future__ import annotations

import anyio
import pytest

import duro
from duro.history import EventRaised, OrchestrationStarted
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, failed, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.orchestration
    async def echo(ctx: duro.OrchestrationContext, n: int) -> int:
        return n

    @registry.orchestration
    async def counted(ctx: duro.OrchestrationContext, n: int) -> dict[str, object]:
        before = ctx.kv.get("runs", 0, type=int)
        ctx.kv.set("runs", before + 1)
        if n < 0:
            raise ValueError("negative")
        return {"n": n, "kv_before": before, "execution": ctx.execution_id}

    @registry.orchestration
    async def collector(ctx: duro.OrchestrationContext, expected: int) -> list[object]:
        return [await ctx.wait_for_event("item") for _ in range(expected)]

    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("go")


async def test_use_existing_returns_the_running_instance_untouched(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("s-1", "waiter")
        await client.start_orchestration("s-1", "echo", 5, if_exists="use_existing")
        await client.raise_event("s-1", "go", "ok")
        assert await completed(client, "s-1") == "ok"
        # and again once it finished: still the same instance, nothing starts
        await client.start_orchestration("s-1", "echo", 6, if_exists="use_existing")
        assert (await client.get_status("s-1")).output == "ok"
        with pytest.raises(duro.InstanceAlreadyExistsError):
            await client.start_orchestration("s-1", "echo", 7)


async def test_restart_if_finished_runs_a_finished_instance_again_as_its_next_execution(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("s-2", "counted", -1)
        assert (await failed(client, "s-2")).message == "negative"
        await client.start_orchestration("s-2", "counted", 3, if_exists="restart_if_finished")
        assert (await client.get_status("s-2")).state in (duro.State.PENDING, duro.State.RUNNING)
        assert await completed(client, "s-2") == {"n": 3, "kv_before": 0, "execution": 2}
        await client.start_orchestration("s-2", "counted", 4, if_exists="restart_if_finished")
        assert await completed(client, "s-2") == {"n": 4, "kv_before": 0, "execution": 3}
    first = await client.get_history("s-2", 1)
    assert isinstance(first[0], OrchestrationStarted) and bytes(first[0].input) == b"-1"
    assert await client.get_value("s-2", "runs") == 1


async def test_restart_if_finished_refuses_a_running_instance(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("s-3", "waiter")
        with pytest.raises(duro.InstanceAlreadyExistsError):
            await client.start_orchestration("s-3", "waiter", if_exists="restart_if_finished")
        await client.raise_event("s-3", "go", 1)
        assert await completed(client, "s-3") == 1


async def test_start_with_event_starts_once_and_delivers_every_event(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    started: list[bool] = []

    async def send(i: int) -> None:
        started.append(await client.start_with_event("s-4", "collector", 5, "item", i))

    async with anyio.create_task_group() as tg:  # racing callers, before any runtime runs
        for i in range(5):
            tg.start_soon(send, i)
    assert started.count(True) == 1
    async with runtime(store, registry, clock):
        assert sorted(await completed(client, "s-4")) == [0, 1, 2, 3, 4]
    assert len(of_type(await client.get_history("s-4"), EventRaised)) == 5


async def test_start_with_event_delivers_to_a_running_instance(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        assert await client.start_with_event("s-5", "collector", 2, "item", "a") is True
        await wait_until(lambda: _running(client, "s-5"), what="s-5 running")
        assert await client.start_with_event("s-5", "collector", 2, "item", "b") is False
        assert await completed(client, "s-5") == ["a", "b"]


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_if_exists_must_be_a_known_policy(client: duro.Client) -> None:
    with pytest.raises(ValueError, match="if_exists"):
        await client.start_orchestration("s-6", "echo", 1, if_exists="replace")  # type: ignore[arg-type]
