"""``duro.testing.WorkflowEnvironment``: virtual time that skips ahead exactly when nothing can
run and the test waits, never while work is in flight; mocks; ``activity_context``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import anyio
import pytest

import duro
from duro.history import TimerCreated, TimerFired
from duro.providers import Provider
from duro.testing import VirtualClock, WorkflowEnvironment, activity_context

pytestmark = pytest.mark.anyio

DAY = 24 * 3600 * 1000


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[VirtualClock], Provider]:
    if request.param == "memory":
        return lambda clock: duro.InMemoryProvider(clock=clock)
    return lambda clock: duro.SqliteProvider(tmp_path / "env.db", clock=clock)


registry = duro.Registry()
calls: list[str] = []


@registry.activity
async def charge_card(ctx: duro.ActivityContext, amount: int) -> str:
    if ctx.attempt < 3:
        raise ConnectionError(f"gateway down (attempt {ctx.attempt})")
    return f"paid {amount} on attempt {ctx.attempt}"


@registry.activity
def notify(ctx: duro.ActivityContext, message: str) -> None:
    calls.append(message)


@registry.orchestration
async def approval(ctx: duro.OrchestrationContext, amount: int) -> dict[str, Any]:
    """Waits 30 days, retries with back-off, then races an approval against a 2-day timeout."""
    started = ctx.utc_now()
    await ctx.schedule_timer(timedelta(days=30))
    policy = duro.RetryPolicy(max_attempts=5, initial_interval=3600, max_interval=None)
    receipt = await ctx.schedule_activity(charge_card, amount, retry=policy)
    ctx.set_custom_status("waiting for approval")
    index, approved = await ctx.select(
        ctx.wait_for_event("approval", type=bool), ctx.schedule_timer(timedelta(days=2))
    )
    await ctx.schedule_activity(notify, f"{ctx.instance_id}: {index}")
    return {
        "receipt": receipt,
        "decision": "timed out" if index == 1 else approved,
        "elapsed_ms": int((ctx.utc_now() - started).total_seconds() * 1000),
    }


async def test_thirty_day_approval_with_retries_and_timeout_completes_without_real_waiting(
    store: Callable[[VirtualClock], Provider],
) -> None:
    async with WorkflowEnvironment(registry, store=store) as env:
        await env.client.start_orchestration("a-1", approval, 120)
        # Five real seconds for 32 days and 3 hours of timers and back-offs: only skipping
        # can finish in time (how fast it is belongs to benchmarks, not to this test).
        status = await env.client.wait_for_orchestration("a-1", timeout=5)
    assert status.state is duro.State.COMPLETED, status.error
    assert status.output["receipt"] == "paid 120 on attempt 3"
    assert status.output["decision"] == "timed out"
    # 30 days, then back-off of 1 h and 2 h, then the 2-day timeout: exactly, not roughly.
    assert status.output["elapsed_ms"] == 32 * DAY + 3 * 3600 * 1000
    assert env.time_skips == 4


async def test_an_event_raised_before_the_test_waits_wins_against_the_timeout() -> None:
    async with WorkflowEnvironment(registry) as env:
        await env.client.start_orchestration("a-2", approval, 5)
        status = await env.client.wait_for_status_change("a-2", timeout=5)
        while status.custom_status != "waiting for approval":
            status = await env.client.wait_for_status_change("a-2", status, timeout=5)
        # The test runs between its waits: time holds still, the 2-day timeout cannot fire.
        assert not any(
            isinstance(e, TimerFired) for e in (await env.client.get_history("a-2"))[-3:]
        )
        await env.client.raise_event("a-2", "approval", True)
        status = await env.client.wait_for_orchestration("a-2", timeout=5)
    assert status.output["decision"] is True


async def test_a_status_wait_returns_the_state_that_satisfied_it_before_time_moves_on() -> None:
    steps = duro.Registry()

    @steps.orchestration
    async def stepper(ctx: duro.OrchestrationContext) -> None:
        for step in ("one", "two", "three"):
            ctx.set_custom_status(step)
            await ctx.schedule_timer(timedelta(days=1))

    async with WorkflowEnvironment(steps) as env:
        start = env.clock.now_ms()
        await env.client.start_orchestration("s-1", stepper)
        seen = []
        status = await env.client.wait_for_status_change("s-1", timeout=5)
        while not status.is_terminal:
            seen.append((status.custom_status, (env.clock.now_ms() - start) // DAY))
            status = await env.client.wait_for_status_change("s-1", status, timeout=5)
    assert [s for s in seen if s[0] is not None] == [("one", 0), ("two", 1), ("three", 2)]


async def test_time_does_not_skip_while_an_activity_is_running() -> None:
    racing = duro.Registry()

    @racing.activity
    async def slow(ctx: duro.ActivityContext) -> str:
        await anyio.sleep(0.1)  # real time: the environment must wait for it
        return "activity"

    @racing.orchestration
    async def race(ctx: duro.OrchestrationContext) -> int:
        index, _ = await ctx.select(ctx.schedule_activity(slow), ctx.schedule_timer(60))
        return index

    async with WorkflowEnvironment(racing) as env:
        await env.client.start_orchestration("r-1", race)
        status = await env.client.wait_for_orchestration("r-1", timeout=5)
    assert status.output == 0
    assert env.time_skips == 0


async def test_an_activity_waiting_for_cancellation_lets_its_attempt_timeout_fire() -> None:
    hung = duro.Registry()
    cancelled: list[str] = []

    @hung.activity
    async def hangs(ctx: duro.ActivityContext) -> int:
        if ctx.attempt == 1:
            await ctx.wait_cancelled()
            cancelled.append(ctx.cancel_reason or "")
        return ctx.attempt

    @hung.orchestration
    async def timed(ctx: duro.OrchestrationContext) -> int:
        policy = duro.RetryPolicy(max_attempts=2, initial_interval=0, attempt_timeout=3600)
        return await ctx.schedule_activity(hangs, retry=policy)

    async with WorkflowEnvironment(hung) as env:
        start = env.clock.now_ms()
        await env.client.start_orchestration("h-1", timed)
        status = await env.client.wait_for_orchestration("h-1", timeout=5)
        assert env.clock.now_ms() - start == 3600 * 1000
    assert status.output == 2
    assert len(cancelled) == 1


async def test_timers_fire_at_exactly_their_recorded_time_and_in_order() -> None:
    timers = duro.Registry()

    @timers.orchestration
    async def staggered(ctx: duro.OrchestrationContext) -> list[int]:
        firsts = [ctx.schedule_timer(timedelta(hours=h)) for h in (5, 1, 3)]
        order = []
        for index in range(3):
            done, _ = await ctx.select(*[f for f in firsts if not f.done])
            order.append(done)
            del index
        return [len(order)]

    async with WorkflowEnvironment(timers) as env:
        await env.client.start_orchestration("t-1", staggered)
        await env.client.wait_for_orchestration("t-1", timeout=5)
        history = await env.client.get_history("t-1")
    created = {e.seq: e.fire_at for e in history if isinstance(e, TimerCreated)}
    fired = [(e.seq, e.ts) for e in history if isinstance(e, TimerFired)]
    assert fired and all(ts == created[seq] for seq, ts in fired)
    assert [ts for _, ts in fired] == sorted(ts for _, ts in fired)


async def test_client_timeouts_count_real_seconds_and_an_idle_instance_does_not_move_time() -> None:
    waiting = duro.Registry()

    @waiting.orchestration
    async def forever(ctx: duro.OrchestrationContext) -> bool:
        return await ctx.wait_for_event("never", type=bool)

    async with WorkflowEnvironment(waiting) as env:
        start = env.clock.now_ms()
        await env.client.start_orchestration("f-1", forever)
        began = time.monotonic()
        with pytest.raises(duro.WaitTimeoutError):
            await env.client.wait_for_orchestration("f-1", timeout=0.2)
        assert 0.2 <= time.monotonic() - began < 2
        assert env.clock.now_ms() == start


async def test_sleep_moves_workflow_time_through_every_timer_on_the_way() -> None:
    async with WorkflowEnvironment(registry) as env:
        await env.client.start_orchestration("a-3", approval, 7)
        await env.sleep(timedelta(days=29))
        assert (await env.client.get_status("a-3")).state is duro.State.RUNNING
        await env.sleep(timedelta(days=1, hours=4))  # the 30-day timer, two retries
        status = await env.client.get_status("a-3")
        assert status.custom_status == "waiting for approval"
        await env.client.raise_event("a-3", "approval", False)
        status = await env.client.wait_for_orchestration("a-3", timeout=5)
    assert status.output["decision"] is False


async def test_without_skipping_the_test_drives_the_clock() -> None:
    async with WorkflowEnvironment(registry, skip_time=False) as env:
        await env.client.start_orchestration("a-4", approval, 1)
        with pytest.raises(duro.WaitTimeoutError):
            await env.client.wait_for_orchestration("a-4", timeout=0.1)
        assert env.time_skips == 0
        await env.clock.advance(timedelta(days=30))
        assert (await env.client.get_status("a-4")).state is duro.State.RUNNING


async def test_mock_activity_replaces_an_activity_by_name_or_function_for_this_environment() -> (
    None
):
    async with WorkflowEnvironment(registry) as env:
        env.mock_activity("charge_card", lambda ctx, amount: f"mocked {amount}")
        notified = AsyncMock(return_value=None)
        env.mock_activity(notify, notified)
        await env.client.start_orchestration("a-5", approval, 9)
        await env.client.raise_event("a-5", "approval", True)
        status = await env.client.wait_for_orchestration("a-5", timeout=5)
    assert status.output["receipt"] == "mocked 9"
    assert notified.await_count == 1
    assert registry.get_activity("charge_card") is not None
    assert registry.get_activity("charge_card").fn is charge_card  # type: ignore[union-attr]


async def test_mock_activity_registers_an_activity_only_another_worker_would_run() -> None:
    remote = duro.Registry()

    @remote.orchestration
    async def render(ctx: duro.OrchestrationContext) -> str:
        result: str = await ctx.schedule_activity("gpu_render", "scene", tag="gpu")
        return result

    async def fake(ctx: duro.ActivityContext, scene: str) -> str:
        return f"{scene} by {ctx.tag}"

    async with WorkflowEnvironment(remote) as env:
        env.mock_activity("gpu_render", fake)
        await env.client.start_orchestration("g-1", render)
        status = await env.client.wait_for_orchestration("g-1", timeout=5)
    assert status.output == "scene by gpu"


async def test_a_store_passed_in_must_come_with_its_clock(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clock"):
        WorkflowEnvironment(registry, store=duro.InMemoryProvider())
    clock = VirtualClock()
    async with WorkflowEnvironment(
        registry, store=duro.SqliteProvider(tmp_path / "x.db", clock=clock), clock=clock
    ) as env:
        assert env.clock is clock


async def test_activity_context_has_defaults_for_unit_tests_of_activities() -> None:
    ctx = activity_context(attempt=3)
    assert await charge_card(ctx, 10) == "paid 10 on attempt 3"
    with pytest.raises(ConnectionError):
        await charge_card(activity_context(), 10)
    assert (ctx.instance_id, ctx.execution_id, ctx.is_cancelled) == ("test-instance", 1, False)
    ctx.cancel("test")
    await ctx.wait_cancelled()
    assert ctx.cancel_reason == "test"
    assert (await ctx.client.get_status("nobody")).state is duro.State.NOT_FOUND


async def test_activity_context_hands_an_activity_the_details_of_an_earlier_attempt() -> None:
    ctx = activity_context(last_heartbeat_details={"page": 7})
    assert ctx.last_heartbeat_details == {"page": 7}
    assert activity_context().last_heartbeat_details is None
    ctx.heartbeat({"page": 8})  # the runtime stores it; the test context only keeps it
    assert ctx.last_heartbeat_details == {"page": 7}


async def test_the_clock_reports_the_earliest_deadline_still_waited_for() -> None:
    clock = VirtualClock(start_ms=0)
    never = anyio.Event()
    assert clock.next_deadline_ms() is None
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.wait, never, 2.0)
        tg.start_soon(clock.wait, never, 1.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline_ms() == 1000
        await clock.advance(1.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline_ms() == 2000
        await clock.advance(1.0)
    assert clock.next_deadline_ms() is None
