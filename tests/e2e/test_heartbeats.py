"""Activity heartbeats end to end: ``ctx.heartbeat``, ``heartbeat_timeout`` and
``ctx.last_heartbeat_details``. The timeout is measured in real (monotonic) time, as a hung
activity is, so these tests use fractions of a second."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

import duro
from duro.history import ActivityFailed, ActivityScheduled
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, of_type, runtime

pytestmark = pytest.mark.anyio


async def test_a_hung_attempt_fails_and_the_retry_resumes_from_its_last_heartbeat(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def crawl(ctx: duro.ActivityContext, pages: int) -> list[int]:
        start = ctx.last_heartbeat_details or 0
        calls.hit("crawl", (ctx.attempt, ctx.last_heartbeat_details))
        done: list[int] = []
        for page in range(start, pages):
            if ctx.attempt == 1 and page == 3:
                await anyio.sleep_forever()  # hung: no more heartbeats
            done.append(page)
            ctx.heartbeat(page + 1)
        return done

    policy = duro.RetryPolicy(max_attempts=2, initial_interval=0)

    @registry.orchestration
    async def crawler(ctx: duro.OrchestrationContext, pages: int) -> list[int]:
        return await ctx.schedule_activity(crawl, pages, retry=policy, heartbeat_timeout=0.2)

    async with runtime(store, registry, clock):
        await client.start_orchestration("hb-retry", crawler, 5)
        assert await completed(client, "hb-retry") == [3, 4]
    assert calls.log == [(1, None), (2, 3)]
    history = await client.get_history("hb-retry")
    [failure] = of_type(history, ActivityFailed)
    assert failure.error.error_type == "ActivityHeartbeatTimeout" and failure.error.retryable
    assert "no heartbeat within 0.2 s" in failure.error.message
    assert bytes(failure.heartbeat_details) == b"3"
    first, second = of_type(history, ActivityScheduled)
    assert (first.heartbeat_timeout_ms, bytes(first.heartbeat_details)) == (200, b"null")
    assert (second.heartbeat_timeout_ms, bytes(second.heartbeat_details)) == (200, b"3")


async def test_a_plain_def_activity_that_stops_heartbeating_fails_without_a_retry_policy(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    release = threading.Event()

    @registry.activity
    def stuck(ctx: duro.ActivityContext, _: None) -> str:
        ctx.heartbeat({"stage": "download"})
        release.wait()  # its thread lives on, but no longer beats
        return "late"

    @registry.orchestration
    async def runner(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            return await ctx.schedule_activity(stuck, heartbeat_timeout=0.2)
        except duro.ActivityFailedError as exc:
            assert exc.heartbeat_details is not None
            raise RuntimeError(f"{exc.error.error_type} at {exc.heartbeat_details.decode()}")

    try:
        async with runtime(store, registry, clock):
            await client.start_orchestration("hb-stuck", runner)
            error = await failed(client, "hb-stuck")
    finally:
        release.set()
    assert error.message == 'ActivityHeartbeatTimeout at {"stage":"download"}'


@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_an_activity_that_keeps_heartbeating_runs_past_its_heartbeat_timeout(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    # Runtime behaviour, the same on every store: one store keeps the suite's real waiting low.
    @registry.activity
    def steady(ctx: duro.ActivityContext, seconds: float) -> int:
        beats = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ctx.heartbeat(beats)
            beats += 1
            time.sleep(0.01)  # the work between beats
        return beats

    @registry.orchestration
    async def runner(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity(steady, 1.5, heartbeat_timeout=1.0)

    async with runtime(store, registry, clock):
        await client.start_orchestration("hb-steady", runner)
        assert await completed(client, "hb-steady") > 1


async def test_bad_heartbeat_arguments_are_typed_errors(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def beats(ctx: duro.ActivityContext, details: Any) -> None:
        ctx.heartbeat(details)

    @registry.orchestration
    async def bad_timeout(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(beats, 1, heartbeat_timeout=-1)

    @registry.orchestration
    async def bad_details(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(beats, "x" * 70_000)

    async with runtime(store, registry, clock):
        await client.start_orchestration("hb-bad-timeout", bad_timeout)
        await client.start_orchestration("hb-bad-details", bad_details)
        timeout_error = await failed(client, "hb-bad-timeout")
        details_error = await failed(client, "hb-bad-details")
    assert timeout_error.error_type == "ValueError"
    assert "heartbeat_timeout must be a positive number of seconds" in timeout_error.message
    assert details_error.error_type == "ActivityFailedError"
    expected = "PayloadError: heartbeat details is 70002 bytes encoded; the limit is 65536"
    assert expected in details_error.message
