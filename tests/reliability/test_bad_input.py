# ruff: noqa: E501 - the table of cases reads best one case per line
"""Bad input gets a clear, typed error that names the problem, and nothing stored changes.

The rows of docs/reliability.md's bad-input table that no other test pins; the table names
the test of every row.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

import duro
from duro.providers import Provider
from tests.cosmos.support import CosmosTestEnv

pytestmark = pytest.mark.anyio

registry = duro.Registry()


@registry.activity
async def echo(ctx: duro.ActivityContext, value: int) -> int:
    return value


@registry.orchestration
async def quick(ctx: duro.OrchestrationContext, value: int) -> int:
    result: int = await ctx.schedule_activity(echo, value)
    return result


@registry.orchestration
async def probes_its_limits(ctx: duro.OrchestrationContext, _: None) -> list[str]:
    """Each bad call raises inside the orchestration, where it can be caught."""
    attempts: list[Callable[[], object]] = [
        lambda: ctx.schedule_timer(math.nan),
        lambda: ctx.schedule_timer(-1),
        lambda: ctx.schedule_timer(1e12),
        lambda: ctx.kv.set("k", "x" * 20_000),
        lambda: ctx.kv.set("", 1),
        lambda: ctx.kv.set("k" * 300, 1),
        lambda: ctx.set_custom_status("x" * 70_000),
        lambda: ctx.set_custom_status(math.inf),
        lambda: ctx.wait_for_event("e" * 300),
        lambda: ctx.schedule_activity(echo, object()),
    ]
    caught: list[str] = []
    for attempt in attempts:
        try:
            attempt()
        except (ValueError, duro.PayloadError) as exc:
            caught.append(type(exc).__name__)
    for n in range(100):
        ctx.kv.set(f"key-{n}", n)
    try:
        ctx.kv.set("one-too-many", 1)
    except duro.PayloadError as exc:
        caught.append(type(exc).__name__)
    return caught


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Provider]:
    provider: Provider = (
        duro.InMemoryProvider()
        if request.param == "memory"
        else duro.SqliteProvider(tmp_path / "bad-input.db")
    )
    async with provider:
        yield provider


async def _snapshot(client: duro.Client) -> tuple[object, ...]:
    page = await client.list_instances()
    depths = await client.queue_depths()
    return (
        sorted((r.instance_id, r.state) for r in page),
        depths.orchestrator,
        depths.timers,
        depths.worker,
    )


async def test_bad_client_calls_raise_typed_errors_and_change_nothing(store: Provider) -> None:
    client = duro.Client(store, registry=registry)
    async with duro.Runtime(store, registry, duro.RuntimeOptions(poll_timeout=0.05)):
        await client.start_orchestration("finished", quick, 2)
        await client.wait_for_orchestration("finished", timeout=10)
    await client.start_orchestration("running", quick, 1)  # pending: no runtime runs now
    before = await _snapshot(client)

    cases: list[tuple[type[Exception], str, Callable[[], Awaitable[Any]]]] = [
        (duro.PayloadError, "cannot be serialised", lambda: client.start_orchestration("x", quick, object())),
        (duro.PayloadError, "NaN", lambda: client.start_orchestration("x", quick, math.nan)),
        (duro.PayloadError, "limit is 262144", lambda: client.start_orchestration("x", quick, "x" * 300_000)),
        (duro.InvalidInstanceIdError, "must not be empty", lambda: client.start_orchestration("", quick, 1)),
        (duro.InvalidInstanceIdError, "limit is 200", lambda: client.start_orchestration("i" * 201, quick, 1)),
        (duro.InvalidInstanceIdError, "contains", lambda: client.start_orchestration("a b", quick, 1)),
        (duro.InstanceAlreadyExistsError, "already exists", lambda: client.start_orchestration("running", quick, 1)),
        (duro.InstanceNotFoundError, "not found", lambda: client.raise_event("missing", "go")),
        (duro.InstanceNotFoundError, "not found", lambda: client.enqueue_event("missing", "q")),
        (duro.InstanceNotFoundError, "not found", lambda: client.cancel_orchestration("missing")),
        (duro.InstanceNotFoundError, "not found", lambda: client.wait_for_orchestration("missing")),
        (duro.InstanceFinishedError, "already completed", lambda: client.raise_event("finished", "go")),
        (duro.InstanceFinishedError, "already completed", lambda: client.enqueue_event("finished", "q")),
        (duro.InstanceFinishedError, "already completed", lambda: client.cancel_orchestration("finished")),
        (duro.PayloadError, "limit is 256", lambda: client.raise_event("running", "e" * 257)),
        (duro.PayloadError, "non-empty", lambda: client.enqueue_event("running", "")),
        (duro.PayloadError, "limit is 1024", lambda: client.cancel_orchestration("running", "r" * 1025)),
        (duro.PayloadError, "NaN", lambda: client.raise_event("running", "go", math.inf)),
    ]  # fmt: skip
    for error_type, says, call in cases:
        with pytest.raises(error_type, match=says):
            await call()

    assert await _snapshot(client) == before


async def test_bad_calls_inside_an_orchestration_raise_there_and_can_be_caught(
    store: Provider,
) -> None:
    client = duro.Client(store, registry=registry)
    async with duro.Runtime(store, registry, duro.RuntimeOptions(poll_timeout=0.05)):
        await client.start_orchestration("limits", probes_its_limits)
        status = await client.wait_for_orchestration("limits", timeout=10)

    assert status.state is duro.State.COMPLETED, status.error
    assert status.output == ["ValueError"] * 3 + ["PayloadError"] * 8


async def test_a_wrong_cosmos_key_is_a_permanent_auth_error_that_never_shows_the_key(
    cosmos_env: CosmosTestEnv,
) -> None:
    from duro_cosmos import CosmosConfig, CosmosProvider
    from duro_cosmos._rest import CosmosAuthError

    wrong = "d3JvbmcgYnV0IHdlbGwtZm9ybWVkIGtleSwgNjQgYnl0ZXMgbG9uZyAtIC0gLSAtIC0gLSAtIC0="
    config = CosmosConfig(cosmos_env.url, wrong, cosmos_env.database, cosmos_env.container)
    store = CosmosProvider(config, transport=cosmos_env.transport)
    try:
        with pytest.raises(CosmosAuthError) as caught:
            await duro.Client(store).get_status("anything")
    finally:
        await store.close()
    assert not caught.value.retryable
    assert wrong not in str(caught.value)


async def test_an_unreachable_cosmos_endpoint_is_a_retryable_error_after_the_retries() -> None:
    from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy
    from duro_cosmos._rest import CosmosUnavailable

    with anyio.fail_after(30):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there now
        key = "a2V5IGZvciBhIHNlcnZlciB0aGF0IGlzIG5vdCB0aGVyZSAtIC0gLSAtIC0gLSAtIC0gLSAtIC0="
        config = CosmosConfig(f"http://127.0.0.1:{port}", key, "db", "c", timeout=2)
        retry = HttpRetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=3)
        store = CosmosProvider(config, retry=retry)
        try:
            with pytest.raises(CosmosUnavailable) as caught:
                await duro.Client(store).get_status("anything")
        finally:
            await store.close()
    assert caught.value.retryable
