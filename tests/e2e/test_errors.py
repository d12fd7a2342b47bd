"""Typed errors for bad names, payloads, ids and awaits; none corrupts state or wedges dispatch."""

from __future__ import annotations

import asyncio

import anyio
import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import clock_running, completed, failed, runtime

pytestmark = pytest.mark.anyio


def _register_echo(registry: duro.Registry) -> None:
    @registry.orchestration
    async def echo(ctx: duro.OrchestrationContext, value: object) -> object:
        return value


async def test_unregistered_orchestration_fails_on_its_last_delivery_and_dispatch_continues(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_echo(registry)
    async with runtime(store, registry, clock, orchestration_concurrency=1, max_deliveries=3):
        await client.start_orchestration("x-1", "no_such_orchestration", 1)
        await client.start_orchestration("x-2", "echo", "still works")
        assert await completed(client, "x-2") == "still works"
        async with clock_running(clock):  # deferred with back-off until its last delivery
            error = await failed(client, "x-1")
    assert error.category is duro.ErrorCategory.CONFIGURATION
    assert error.error_type == "UnregisteredError"
    assert "no_such_orchestration" in error.message


async def test_unregistered_activity_fails_the_instance_with_configuration_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def calls_missing(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity("no_such_activity")

    async with runtime(store, registry, clock):
        await client.start_orchestration("x-3", calls_missing)
        error = await failed(client, "x-3")
    assert error.category is duro.ErrorCategory.CONFIGURATION
    assert error.error_type == "UnregisteredError"
    assert "no_such_activity" in error.message


async def test_activity_no_worker_has_fails_with_configuration_error_on_its_last_delivery(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    orchestrator = duro.Registry()
    worker = duro.Registry()

    @orchestrator.activity
    async def only_here(ctx: duro.ActivityContext, _: None) -> None:
        return None

    @orchestrator.orchestration
    async def remote(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        try:
            await ctx.schedule_activity("only_here")
        except duro.ActivityFailedError as exc:
            return [exc.error.category.value, exc.error_type]
        return []

    async with (
        runtime(store, orchestrator, clock, activity_concurrency=0),
        runtime(store, worker, clock, orchestration_concurrency=0, max_deliveries=3),
        clock_running(clock),  # the item is left for another worker until its last delivery
    ):
        await client.start_orchestration("x-4", "remote")
        assert await completed(client, "x-4") == ["configuration", "UnregisteredError"]


async def test_non_serialisable_client_input_raises_and_stores_nothing(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_echo(registry)
    with pytest.raises(duro.PayloadError):
        await client.start_orchestration("x-5", "echo", object())
    with pytest.raises(duro.PayloadError):
        await client.start_orchestration("x-5", "echo", {1j: "complex key"})
    assert (await client.get_status("x-5")).state is duro.State.NOT_FOUND
    async with runtime(store, registry, clock):
        await client.start_orchestration("x-5", "echo", [1, "two"])
        assert await completed(client, "x-5") == [1, "two"]


async def test_oversized_payloads_are_rejected_with_payload_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    big = "x" * (257 * 1024)

    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("e")

    with pytest.raises(duro.PayloadError, match="limit"):
        await client.start_orchestration("x-6", waiter, big)
    assert (await client.get_status("x-6")).state is duro.State.NOT_FOUND
    async with runtime(store, registry, clock):
        await client.start_orchestration("x-6", waiter)
        with pytest.raises(duro.PayloadError):
            await client.raise_event("x-6", "e", big)
        with pytest.raises(duro.PayloadError):
            await client.enqueue_event("x-6", "q", big)
        await client.raise_event("x-6", "e", "small")
        assert await completed(client, "x-6") == "small"


async def test_non_serialisable_values_inside_orchestrations_and_activities(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    attempts: list[int] = []

    @registry.activity
    async def returns_object(ctx: duro.ActivityContext, _: None) -> object:
        attempts.append(ctx.attempt)
        return object()

    @registry.activity
    async def returns_huge(ctx: duro.ActivityContext, _: None) -> str:
        return "y" * (300 * 1024)

    @registry.activity
    async def takes(ctx: duro.ActivityContext, value: object) -> None:
        return None

    @registry.orchestration
    async def probe(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        results = []
        try:
            ctx.schedule_activity(takes, object())
        except duro.PayloadError:
            results.append("input rejected")
        policy = duro.RetryPolicy(max_attempts=3, initial_interval=0)
        try:
            await ctx.schedule_activity(returns_object, retry=policy)
        except duro.ActivityFailedError as exc:
            results.append(f"output {exc.error_type} after {exc.attempts}")
        try:
            await ctx.schedule_activity(returns_huge)
        except duro.ActivityFailedError as exc:
            results.append(f"huge {exc.error_type}")
        return results

    @registry.orchestration
    async def bad_output(ctx: duro.OrchestrationContext, _: None) -> object:
        return {"when": object()}

    async with runtime(store, registry, clock):
        await client.start_orchestration("x-7", probe)
        await client.start_orchestration("x-8", bad_output)
        assert await completed(client, "x-7") == [
            "input rejected",
            "output PayloadError after 1",
            "huge PayloadError",
        ]
        error = await failed(client, "x-8")
    assert attempts == [1]  # a payload error is permanent: no retries
    assert error.error_type == "PayloadError"


async def test_input_that_does_not_match_the_annotation_fails_with_payload_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def wants_int(ctx: duro.OrchestrationContext, n: int) -> int:
        return n

    async with runtime(store, registry, clock):
        await client.start_orchestration("x-9", wants_int, "not an int")
        error = await failed(client, "x-9")
    assert error.error_type == "PayloadError"
    assert "int" in error.message


@pytest.mark.parametrize(
    "bad_id", ["", "a/b", "white space", "x" * 201, "q?uery", "hash#", "back\\slash"]
)
async def test_invalid_instance_ids_are_rejected_everywhere(
    client: duro.Client, registry: duro.Registry, bad_id: str
) -> None:
    _register_echo(registry)
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.start_orchestration(bad_id, "echo")
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.get_status(bad_id)
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.raise_event(bad_id, "e")
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.delete_instance(bad_id)
    assert await client.list_instances() == []


async def test_non_string_instance_id_is_rejected(client: duro.Client) -> None:
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.start_orchestration(123, "echo")  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # InvalidInstanceIdError is also a ValueError
        await client.get_status(None)  # type: ignore[arg-type]


async def test_invalid_sub_orchestration_id_fails_the_parent_with_a_typed_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_echo(registry)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            ctx.schedule_sub_orchestration("echo", 1, instance_id="bad id")
        except duro.InvalidInstanceIdError:
            return "rejected"
        return "accepted"

    async with runtime(store, registry, clock):
        await client.start_orchestration("x-10", parent)
        assert await completed(client, "x-10") == "rejected"


async def test_duplicate_start_is_rejected_and_leaves_the_original_untouched(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register_echo(registry)
    await client.start_orchestration("dup", "echo", "first")
    with pytest.raises(duro.InstanceAlreadyExistsError) as pending:
        await client.start_orchestration("dup", "echo", "while pending")
    assert pending.value.instance_id == "dup"
    async with runtime(store, registry, clock):
        assert await completed(client, "dup") == "first"
        with pytest.raises(duro.InstanceAlreadyExistsError):
            await client.start_orchestration("dup", "echo", "after completion")
    status = await client.get_status("dup")
    assert status.output == "first"
    assert len(await client.list_instances()) == 1


async def test_non_durable_await_fails_the_instance_and_does_not_wedge_the_dispatcher(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    anyio_backend: str,
) -> None:
    _register_echo(registry)

    @registry.orchestration
    async def sleeps(ctx: duro.OrchestrationContext, _: None) -> None:
        if anyio_backend == "asyncio":
            await asyncio.sleep(3600)
        else:
            import trio

            await trio.sleep(3600)

    @registry.orchestration
    async def waits_on_event(ctx: duro.OrchestrationContext, _: None) -> None:
        await anyio.Event().wait()

    async with runtime(store, registry, clock, orchestration_concurrency=1):
        await client.start_orchestration("x-11", sleeps)
        await client.start_orchestration("x-12", waits_on_event)
        await client.start_orchestration("x-13", "echo", "alive")
        assert await completed(client, "x-13") == "alive"
        for instance_id in ("x-11", "x-12"):
            error = await failed(client, instance_id)
            assert error.category is duro.ErrorCategory.CONFIGURATION, instance_id
            assert error.error_type == "NonDurableAwaitError", instance_id
            assert "ctx.schedule_timer" in error.message


async def test_orchestration_exception_fails_with_type_message_and_traceback(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def raises(ctx: duro.OrchestrationContext, _: None) -> None:
        raise PermissionError("not allowed")

    async with runtime(store, registry, clock):
        await client.start_orchestration("x-14", raises)
        error = await failed(client, "x-14")
    assert error.category is duro.ErrorCategory.APPLICATION
    assert (error.error_type, error.message) == ("PermissionError", "not allowed")
    assert error.details is not None and "raises" in error.details


def test_bad_registrations_raise_registration_error() -> None:
    registry = duro.Registry()

    @registry.activity
    async def act(ctx: duro.ActivityContext, x: int) -> int:
        return x

    with pytest.raises(duro.RegistrationError):
        registry.activity(name="act")(act)
    with pytest.raises(duro.RegistrationError):

        @registry.orchestration
        def not_async(ctx: duro.OrchestrationContext, x: int) -> int:
            return x

    with pytest.raises(duro.RegistrationError):

        @registry.activity
        async def too_many(ctx: duro.ActivityContext, a: int, b: int) -> int:
            return a + b

    with pytest.raises(duro.RegistrationError):
        registry.orchestration(name="duro:reserved")(_orch)


async def _orch(ctx: duro.OrchestrationContext, _: None) -> None:
    return None


async def test_waiting_on_an_unknown_instance_raises_instance_not_found_at_once(
    store: Provider, client: duro.Client
) -> None:
    with anyio.fail_after(2):  # far below the wait's own timeout: it must not wait it out
        with pytest.raises(duro.InstanceNotFoundError) as caught:
            await client.wait_for_orchestration("nobody-here", timeout=30)
        with pytest.raises(duro.InstanceNotFoundError):
            await client.wait_for_status_change("nobody-here", timeout=30)
    assert caught.value.instance_id == "nobody-here"
