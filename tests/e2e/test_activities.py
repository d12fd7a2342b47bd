"""Activities end to end: async and plain def, names, context, failures, cancellation."""

from __future__ import annotations

import logging
import threading

import pytest

import duro
from duro.history import ActivityCompleted, ActivityFailed, ActivityScheduled
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, history_has, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


async def test_async_activity_result_becomes_orchestration_output(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def greet(ctx: duro.ActivityContext, name: str) -> str:
        return f"Hello, {name}!"

    @registry.orchestration
    async def hello(ctx: duro.OrchestrationContext, name: str) -> str:
        return await ctx.schedule_activity(greet, name)

    async with runtime(store, registry, clock):
        await client.start_orchestration("inst-1", hello, "Python")
        status = await client.wait_for_orchestration("inst-1", timeout=5)
    assert status.state is duro.State.COMPLETED
    assert status.output == "Hello, Python!"
    assert status.name == "hello"


async def test_plain_def_activity_runs_in_a_worker_thread(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    main_thread = threading.get_ident()

    @registry.activity
    def which_thread(ctx: duro.ActivityContext, _: None) -> bool:
        return threading.get_ident() != main_thread

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> bool:
        return await ctx.schedule_activity(which_thread)

    async with runtime(store, registry, clock):
        await client.start_orchestration("sync-1", orch)
        assert await completed(client, "sync-1") is True


async def test_activity_scheduled_by_registered_name_and_custom_name(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity(name="Greet")
    async def greet_impl(ctx: duro.ActivityContext, name: str) -> str:
        return f"hi {name}"

    @registry.orchestration(name="Hello")
    async def hello_impl(ctx: duro.OrchestrationContext, name: str) -> list[str]:
        by_name = await ctx.schedule_activity("Greet", name)
        by_fn = await ctx.schedule_activity(greet_impl, name + "!")
        return [by_name, by_fn]

    async with runtime(store, registry, clock):
        await client.start_orchestration("names-1", "Hello", "ann")
        # the client was given the registry, so the function maps to its custom name
        await client.start_orchestration("names-2", hello_impl, "bob")
        assert await completed(client, "names-1") == ["hi ann", "hi ann!"]
        assert await completed(client, "names-2") == ["hi bob", "hi bob!"]
    history = await client.get_history("names-1")
    assert [e.name for e in of_type(history, ActivityScheduled)] == ["Greet", "Greet"]


async def test_activity_context_describes_the_step(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str, int, str]] = []

    @registry.activity
    async def introspect(ctx: duro.ActivityContext, _: None) -> None:
        seen.append((ctx.instance_id, ctx.activity_name, ctx.attempt, ctx.orchestration_name))
        assert not ctx.is_cancelled
        ctx.logger.info("running")

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(introspect)

    with caplog.at_level(logging.INFO, logger="duro.activity"):
        async with runtime(store, registry, clock):
            await client.start_orchestration("ctx-1", orch)
            await completed(client, "ctx-1")
    assert seen == [("ctx-1", "introspect", 1, "orch")]
    [record] = [r for r in caplog.records if r.name == "duro.activity.introspect"]
    assert (record.getMessage(), record.instance_id, record.attempt) == (
        "[ctx-1] running",
        "ctx-1",
        1,
    )


async def test_activities_without_input_parameter_and_with_none_output(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def no_input(ctx: duro.ActivityContext) -> int:
        return 7

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext) -> int:
        return await ctx.schedule_activity(no_input)

    async with runtime(store, registry, clock):
        await client.start_orchestration("noin-1", orch)
        assert await completed(client, "noin-1") == 7


async def test_failed_activity_raises_activity_failed_with_original_type_and_message(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def explode(ctx: duro.ActivityContext, what: str) -> None:
        raise ValueError(f"bad {what}")

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> dict[str, object]:
        try:
            await ctx.schedule_activity(explode, "input")
        except duro.ActivityFailedError as exc:
            return {
                "type": exc.error_type,
                "message": exc.error_message,
                "name": exc.name,
                "attempts": exc.attempts,
                "category": exc.error.category.value,
            }
        return {}

    async with runtime(store, registry, clock):
        await client.start_orchestration("fail-1", orch)
        assert await completed(client, "fail-1") == {
            "type": "ValueError",
            "message": "bad input",
            "name": "explode",
            "attempts": 1,
            "category": "application",
        }
    history = await client.get_history("fail-1")
    assert len(of_type(history, ActivityFailed)) == 1


async def test_uncaught_activity_failure_fails_instance_with_application_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    def explode(ctx: duro.ActivityContext, _: None) -> None:
        raise KeyError("missing")

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(explode)

    async with runtime(store, registry, clock):
        await client.start_orchestration("fail-2", orch)
        error = await failed(client, "fail-2")
    assert error.category is duro.ErrorCategory.APPLICATION
    assert error.error_type == "ActivityFailedError"
    assert "KeyError" in error.message and "missing" in error.message


async def test_activity_can_start_and_signal_orchestrations_through_its_client(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def listener(ctx: duro.OrchestrationContext, _: None) -> str:
        return await ctx.wait_for_event("ping")

    @registry.activity
    async def kick_off(ctx: duro.ActivityContext, target: str) -> str:
        await ctx.client.start_orchestration(target, "listener")
        await ctx.client.raise_event(target, "ping", f"from {ctx.instance_id}")
        return target

    @registry.orchestration
    async def starter(ctx: duro.OrchestrationContext, _: None) -> str:
        return await ctx.schedule_activity(kick_off, "listener-1")

    async with runtime(store, registry, clock):
        await client.start_orchestration("starter-1", starter)
        assert await completed(client, "starter-1") == "listener-1"
        assert await completed(client, "listener-1") == "from starter-1"


async def test_async_activity_awaiting_cancellation_is_released_when_select_drops_it(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def slow(ctx: duro.ActivityContext, _: None) -> str:
        calls.hit("started")
        await ctx.wait_cancelled()
        calls.hit("cancelled", ctx.cancel_reason)
        return "never used"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.select(ctx.schedule_activity(slow), ctx.wait_for_event("go"))

    async with runtime(store, registry, clock):
        await client.start_orchestration("coop-1", orch)
        await wait_until(lambda: calls["started"] == 1)
        await client.raise_event("coop-1", "go", 5)
        assert await completed(client, "coop-1") == [1, 5]
        await wait_until(lambda: calls["cancelled"] == 1, what="activity saw cancellation")
    history = await client.get_history("coop-1")
    assert not of_type(history, ActivityCompleted)


async def test_plain_def_activity_can_poll_cancellation(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    started = threading.Event()
    observed = threading.Event()

    @registry.activity
    def spin(ctx: duro.ActivityContext, _: None) -> None:
        started.set()
        for _ in range(500):
            if ctx.is_cancelled:
                observed.set()
                return
            threading.Event().wait(0.01)

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> int:
        index, _value = await ctx.select(ctx.schedule_activity(spin), ctx.wait_for_event("stop"))
        return index

    async with runtime(store, registry, clock):
        await client.start_orchestration("poll-1", orch)
        await wait_until(started.is_set)
        await client.raise_event("poll-1", "stop")
        assert await completed(client, "poll-1") == 1
        await wait_until(observed.is_set, what="sync activity observed is_cancelled")


async def test_activity_tag_routes_to_workers_serving_that_tag(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    ran_on: list[str] = []

    @registry.activity
    async def where(ctx: duro.ActivityContext, _: None) -> str:
        ran_on.append(ctx.worker_id)
        return ctx.tag or "untagged"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        return [
            await ctx.schedule_activity(where, tag="gpu"),
            await ctx.schedule_activity(where),
        ]

    gpu_only = duro.TagFilter(tags=frozenset({"gpu"}), include_untagged=False)
    async with (
        runtime(store, registry, clock, worker_id="general", orchestration_concurrency=1),
        runtime(
            store,
            registry,
            clock,
            worker_id="gpu",
            tag_filter=gpu_only,
            orchestration_concurrency=0,
        ),
    ):
        await client.start_orchestration("tag-1", orch)
        assert await completed(client, "tag-1") == ["gpu", "untagged"]
    assert ran_on == ["gpu", "general"]


async def test_activities_of_one_session_run_on_one_worker(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def who(ctx: duro.ActivityContext, _: None) -> str:
        return ctx.worker_id

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        return await ctx.join([ctx.schedule_activity(who, session="s1") for _ in range(6)])

    async with (
        runtime(store, registry, clock, worker_id="w1", max_sessions=4),
        runtime(store, registry, clock, worker_id="w2", max_sessions=4),
    ):
        await client.start_orchestration("sess-1", orch)
        workers = await completed(client, "sess-1")
    assert len(workers) == 6 and len(set(workers)) == 1


async def test_each_activity_runs_once_even_when_every_turn_replays_history(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def step(ctx: duro.ActivityContext, n: int) -> int:
        calls.hit(f"step{n}")
        return n * 10

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> list[int]:
        return [await ctx.schedule_activity(step, n) for n in range(4)]

    # no execution cache: every turn replays the whole history
    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("seq-1", orch)
        assert await completed(client, "seq-1") == [0, 10, 20, 30]
    assert calls.counts == {"step0": 1, "step1": 1, "step2": 1, "step3": 1}
    history = await history_has(client, "seq-1", ActivityCompleted, 4)
    assert [e.seq for e in of_type(history, ActivityCompleted)] == [1, 2, 3, 4]
