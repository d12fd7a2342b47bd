"""RetryPolicy: durable retries with durable back-off timers."""

from __future__ import annotations

import pytest

import duro
from duro.history import ActivityFailed, ActivityScheduled, TimerCreated
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, history_has, of_type, runtime

pytestmark = pytest.mark.anyio


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def _register_flaky(registry: duro.Registry, calls: Calls) -> None:
    @registry.activity
    async def flaky(ctx: duro.ActivityContext, succeed_on: int) -> int:
        calls.hit("flaky", ctx.attempt)
        if ctx.attempt < succeed_on:
            raise Flaky(f"attempt {ctx.attempt}")
        return ctx.attempt

    @registry.activity
    async def fatal(ctx: duro.ActivityContext, _: None) -> None:
        calls.hit("fatal", ctx.attempt)
        raise Fatal("do not retry")


async def test_retry_succeeds_after_failures_with_backoff_timers(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)
    policy = duro.RetryPolicy(max_attempts=5, initial_interval=1, backoff_coefficient=2)

    @registry.orchestration
    async def retried(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity("flaky", 3, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-1", retried)
        history = await history_has(client, "r-1", TimerCreated, 1)
        first_timer = of_type(history, TimerCreated)[0]
        assert first_timer.fire_at - first_timer.ts == 1000
        await clock.advance(1)
        history = await history_has(client, "r-1", TimerCreated, 2)
        second_timer = of_type(history, TimerCreated)[1]
        assert second_timer.fire_at - second_timer.ts == 2000
        await clock.advance(2)
        assert await completed(client, "r-1") == 3
    assert calls.log == [1, 2, 3]
    history = await client.get_history("r-1")
    assert [e.attempt for e in of_type(history, ActivityScheduled)] == [1, 2, 3]
    assert len(of_type(history, ActivityFailed)) == 2


async def test_retry_gives_up_after_max_attempts_with_the_last_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)
    policy = duro.RetryPolicy(max_attempts=3, initial_interval=0)

    @registry.orchestration
    async def retried(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        try:
            await ctx.schedule_activity("flaky", 99, retry=policy)
        except duro.ActivityFailedError as exc:
            return [exc.attempts, exc.error_type, exc.error_message]
        return []

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-2", retried)
        assert await completed(client, "r-2") == [3, "Flaky", "attempt 3"]
    assert calls["flaky"] == 3


async def test_non_retryable_errors_fail_at_once(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)

    @registry.orchestration
    async def by_type(ctx: duro.OrchestrationContext, _: None) -> int:
        policy = duro.RetryPolicy(max_attempts=5, initial_interval=0, non_retryable=[Fatal])
        await ctx.schedule_activity("fatal", retry=policy)
        return 0

    @registry.orchestration
    async def by_name(ctx: duro.OrchestrationContext, _: None) -> int:
        policy = duro.RetryPolicy(max_attempts=5, initial_interval=0, non_retryable=["Fatal"])
        await ctx.schedule_activity("fatal", retry=policy)
        return 0

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-3", by_type)
        error = await failed(client, "r-3")
        await client.start_orchestration("r-4", by_name)
        await failed(client, "r-4")
    assert calls["fatal"] == 2
    assert "Fatal" in error.message and "1 attempt" in error.message


async def test_attempt_timeout_cancels_a_hung_attempt_and_retries(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def hangs_first(ctx: duro.ActivityContext, _: None) -> int:
        calls.hit("start", ctx.attempt)
        if ctx.attempt == 1:
            await ctx.wait_cancelled()
            calls.hit("cancelled")
        return ctx.attempt

    @registry.orchestration
    async def timed(ctx: duro.OrchestrationContext, _: None) -> int:
        policy = duro.RetryPolicy(max_attempts=2, initial_interval=0, attempt_timeout=30)
        return await ctx.schedule_activity(hangs_first, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-5", timed)
        await history_has(client, "r-5", TimerCreated)
        await clock.advance(30)
        assert await completed(client, "r-5") == 2
    assert calls["cancelled"] == 1


async def test_attempt_timeout_exhausted_reports_activity_timeout(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def hangs(ctx: duro.ActivityContext, _: None) -> None:
        await ctx.wait_cancelled()

    @registry.orchestration
    async def timed(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        policy = duro.RetryPolicy(max_attempts=1, attempt_timeout=5)
        try:
            await ctx.schedule_activity(hangs, retry=policy)
        except duro.ActivityFailedError as exc:
            return [exc.error_type, exc.attempts]
        return []

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-6", timed)
        await history_has(client, "r-6", TimerCreated)
        await clock.advance(5)
        assert await completed(client, "r-6") == ["ActivityTimeout", 1]


async def test_backoff_is_capped_by_max_interval(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)
    policy = duro.RetryPolicy(
        max_attempts=4, initial_interval=10, backoff_coefficient=10, max_interval=50
    )

    @registry.orchestration
    async def capped(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity("flaky", 4, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-7", capped)
        for n, delay in enumerate((10, 50, 50), start=1):
            history = await history_has(client, "r-7", TimerCreated, n)
            timer = of_type(history, TimerCreated)[-1]
            assert timer.fire_at - timer.ts == delay * 1000
            await clock.advance(delay)
        assert await completed(client, "r-7") == 4


async def test_retry_backoff_survives_a_runtime_restart(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)
    policy = duro.RetryPolicy(max_attempts=3, initial_interval=600)

    @registry.orchestration
    async def retried(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity("flaky", 2, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-8", retried)
        await history_has(client, "r-8", TimerCreated)
    await clock.advance(600)
    async with runtime(store, registry, clock):
        assert await completed(client, "r-8") == 2
    assert calls.log == [1, 2]


async def test_linear_backoff_waits_longer_by_the_same_step_each_time(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)
    policy = duro.RetryPolicy(max_attempts=4, initial_interval=3, backoff="linear")

    @registry.orchestration
    async def retried(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity("flaky", 4, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-lin", retried)
        for n, delay in enumerate((3, 6, 9), start=1):
            history = await history_has(client, "r-lin", TimerCreated, n)
            timer = of_type(history, TimerCreated)[-1]
            assert timer.fire_at - timer.ts == delay * 1000
            await clock.advance(delay)
        assert await completed(client, "r-lin") == 4


async def test_total_timeout_stops_retrying_when_the_next_attempt_could_not_start_in_time(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_flaky(registry, calls)
    policy = duro.RetryPolicy(
        max_attempts=10, initial_interval=10, backoff_coefficient=1, total_timeout=25
    )

    @registry.orchestration
    async def retried(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity("flaky", 99, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-total", retried)
        for n in (1, 2):
            # each attempt races a timer for what is left of the budget, then backs off
            await history_has(client, "r-total", TimerCreated, 2 * n)
            await clock.advance(10)
        error = await failed(client, "r-total")
    # attempts at 0 s, 10 s and 20 s; a fourth would start at 30 s, past the 25 s budget
    assert calls.log == [1, 2, 3]
    assert "after 3 attempt(s): Flaky" in error.message


async def test_total_timeout_cancels_an_attempt_still_running_at_the_deadline(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()

    @registry.activity
    async def hangs(ctx: duro.ActivityContext, _: None) -> None:
        calls.hit("hangs", ctx.attempt)
        await ctx.wait_cancelled()

    policy = duro.RetryPolicy(max_attempts=5, attempt_timeout=30, total_timeout=12)

    @registry.orchestration
    async def retried(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(hangs, retry=policy)

    async with runtime(store, registry, clock):
        await client.start_orchestration("r-hang", retried)
        history = await history_has(client, "r-hang", TimerCreated, 1)
        timer = of_type(history, TimerCreated)[0]
        assert timer.fire_at - timer.ts == 12_000  # the budget, not the 30 s attempt timeout
        await clock.advance(12)
        error = await failed(client, "r-hang")
    assert calls.log == [1]
    assert "ActivityTimeout: the retry policy's total_timeout of 12.0 s passed" in error.message


def test_invalid_retry_policies_are_rejected() -> None:
    with pytest.raises(ValueError):
        duro.RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        duro.RetryPolicy(backoff_coefficient=0.5)
    with pytest.raises(ValueError):
        duro.RetryPolicy(attempt_timeout=0)
