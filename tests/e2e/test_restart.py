"""``Client.restart_orchestration``: the same orchestration, input and version again, in place
or as a new instance."""

from __future__ import annotations

import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, failed, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.orchestration(name="greet", version="1.0.0")
    async def greet_v1(ctx: duro.OrchestrationContext, name: str) -> str:
        if name == "nobody":
            raise ValueError("no one to greet")
        return f"v1 hello {name} #{ctx.execution_id}"

    @registry.orchestration(name="greet", version="2.0.0")
    async def greet_v2(ctx: duro.OrchestrationContext, name: str) -> str:
        return f"v2 hello {name} #{ctx.execution_id}"

    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, tag: str) -> str:
        return f"{tag}:{await ctx.wait_for_event('go', type=str)}"

    @registry.orchestration
    async def remember(ctx: duro.OrchestrationContext, tag: str) -> list[object]:
        before = ctx.kv.get("tag")
        ctx.kv.set("tag", tag)
        await ctx.wait_for_event("go")
        return [before, ctx.kv.get("tag")]

    @registry.orchestration
    async def report(ctx: duro.OrchestrationContext, tag: str) -> str:
        ctx.set_custom_status({"done": tag})
        ctx.kv.set("tag", tag)
        return tag

    @registry.orchestration
    async def countdown(ctx: duro.OrchestrationContext, n: int) -> int:
        if n > 0:
            ctx.continue_as_new(n - 1)
        return ctx.execution_id


async def test_a_finished_instance_restarts_in_place_with_its_input_and_version(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("r-1", "greet", "ada", version="1.0.0")
        assert await completed(client, "r-1") == "v1 hello ada #1"
        assert await client.restart_orchestration("r-1") == "r-1"
        assert await completed(client, "r-1") == "v1 hello ada #2"
        assert await client.restart_orchestration("r-1", latest=True) == "r-1"
        assert await completed(client, "r-1") == "v2 hello ada #3"
    assert [e.execution_id for e in await client.list_executions("r-1")] == [1, 2, 3]


async def test_a_failed_instance_restarts_and_fails_again_with_the_same_input(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("r-2", "greet", "nobody", version="1.0.0")
        assert (await failed(client, "r-2")).message == "no one to greet"
        await client.restart_orchestration("r-2")
        assert (await failed(client, "r-2")).message == "no one to greet"
        status = await client.get_status("r-2")
    assert status.execution_id == 2


async def test_a_running_instance_restarts_as_a_new_instance_only(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("r-3", "waiter", "first")
        await wait_until(lambda: _running(client, "r-3"), what="r-3 to run")
        with pytest.raises(duro.InstanceStillRunningError, match="once it has completed"):
            await client.restart_orchestration("r-3")
        assert await client.restart_orchestration("r-3", new_instance_id="r-3b") == "r-3b"
        with pytest.raises(duro.InstanceAlreadyExistsError):
            await client.restart_orchestration("r-3", new_instance_id="r-3b")
        await client.raise_event("r-3b", "go", "x")
        await client.raise_event("r-3", "go", "y")
        assert await completed(client, "r-3b") == "first:x"
        assert await completed(client, "r-3") == "first:y"
    with pytest.raises(duro.InstanceNotFoundError):
        await client.restart_orchestration("r-missing")
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.restart_orchestration("r-3", new_instance_id="bad id")


async def test_restart_after_continue_as_new_uses_the_latest_executions_input(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("r-4", "countdown", 2)
        assert await completed(client, "r-4") == 3
        await client.restart_orchestration("r-4")
        assert await completed(client, "r-4") == 4  # input 0: it ends at once


async def _running(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).state is duro.State.RUNNING


async def test_a_restarted_instance_replays_from_no_kv_after_its_first_turn(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)

    async def waits_in(execution_id: int) -> bool:
        status = await client.get_status("r-kv")
        return status.state is duro.State.RUNNING and status.execution_id == execution_id

    # No cache: the turn that takes the event replays the execution from the store's snapshot.
    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("r-kv", "remember", "a")
        await wait_until(lambda: waits_in(1), what="first execution waits")
        await client.raise_event("r-kv", "go")
        assert await completed(client, "r-kv") == [None, "a"]
        await client.restart_orchestration("r-kv")
        await wait_until(lambda: waits_in(2), what="restarted execution waits")
        await client.raise_event("r-kv", "go")
        assert await completed(client, "r-kv") == [None, "a"]
    assert await client.get_value("r-kv", "tag") == "a"


async def test_a_queued_restart_shows_no_custom_status_or_kv_of_the_finished_execution(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("r-shown", "report", "a")
        assert await completed(client, "r-shown") == "a"
    assert (await client.get_status("r-shown")).custom_status == {"done": "a"}

    await client.restart_orchestration("r-shown")  # no runtime: it stays queued

    status = await client.get_status("r-shown")
    assert (status.state, status.custom_status) == (duro.State.PENDING, None)
    assert await client.get_value("r-shown", "tag") is None
    assert await client.get_values("r-shown") == {}
