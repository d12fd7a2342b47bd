"""Replay: finished steps never run again, is_replaying is exact, divergence is reported."""

from __future__ import annotations

import logging

import pytest

import duro
from duro.history import ActivityCompleted, TimerCreated
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import Calls, completed, failed, history_has, runtime

pytestmark = pytest.mark.anyio


def _register_steps(registry: duro.Registry, calls: Calls) -> None:
    @registry.activity
    async def step(ctx: duro.ActivityContext, n: int) -> int:
        calls.hit(f"step{n}")
        return n


async def test_restarted_runtime_resumes_without_rerunning_completed_activities(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_steps(registry, calls)

    @registry.orchestration
    async def pipeline(ctx: duro.OrchestrationContext, _: None) -> list[int]:
        a = await ctx.schedule_activity("step", 1)
        b = await ctx.schedule_activity("step", 2)
        signal = await ctx.wait_for_event("resume")
        c = await ctx.schedule_activity("step", 3)
        return [a, b, signal, c]

    async with runtime(store, registry, clock):
        await client.start_orchestration("rp-1", pipeline)
        await history_has(client, "rp-1", ActivityCompleted, 2)
    assert calls.counts == {"step1": 1, "step2": 1}
    async with runtime(store, registry, clock):
        await client.raise_event("rp-1", "resume", 99)
        assert await completed(client, "rp-1") == [1, 2, 99, 3]
    assert calls.counts == {"step1": 1, "step2": 1, "step3": 1}


async def test_is_replaying_is_true_exactly_while_re_executing_recorded_history(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_steps(registry, calls)
    observed: list[tuple[str, bool]] = []

    @registry.orchestration
    async def watched(ctx: duro.OrchestrationContext, _: None) -> None:
        observed.append(("start", ctx.is_replaying))
        await ctx.schedule_activity("step", 1)
        observed.append(("after-1", ctx.is_replaying))
        await ctx.schedule_timer(5)
        observed.append(("after-timer", ctx.is_replaying))
        await ctx.schedule_activity("step", 2)
        observed.append(("end", ctx.is_replaying))

    async with runtime(store, registry, clock, execution_cache_size=0):
        await client.start_orchestration("rp-2", watched)
        await history_has(client, "rp-2", TimerCreated)
        await clock.advance(5)
        await completed(client, "rp-2")
    labels = ["start", "after-1", "after-timer", "end"]
    for label in labels:
        flags = [flag for seen, flag in observed if seen == label]
        assert flags[0] is False, f"{label}: first execution must not be a replay"
        assert all(flags[1:]), f"{label}: re-executions must be replays: {flags}"
    # four turns: each label is re-executed once per later turn
    assert [len([1 for seen, _ in observed if seen == label]) for label in labels] == [4, 3, 2, 1]


async def test_replay_safe_logger_logs_each_message_once(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    calls = Calls()
    _register_steps(registry, calls)
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    @registry.orchestration
    async def chatty(ctx: duro.OrchestrationContext, _: None) -> None:
        for n in range(3):
            ctx.logger.warning("before step %d", n)
            await ctx.schedule_activity("step", n)

    logger = logging.getLogger("duro.orchestration.chatty")
    handler = Collect()
    logger.addHandler(handler)
    try:
        async with runtime(store, registry, clock, execution_cache_size=0):
            await client.start_orchestration("rp-3", chatty)
            await completed(client, "rp-3")
    finally:
        logger.removeHandler(handler)
    # The instance id starts each message: a plain log format still tells instances apart.
    assert records == ["[rp-3] before step 0", "[rp-3] before step 1", "[rp-3] before step 2"]


async def test_changed_code_fails_the_instance_with_nondeterminism_error(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    def build(second: str) -> duro.Registry:
        registry = duro.Registry()

        @registry.activity
        async def charge(ctx: duro.ActivityContext, _: None) -> str:
            return "charged"

        @registry.activity
        async def refund(ctx: duro.ActivityContext, _: None) -> str:
            return "refunded"

        @registry.orchestration
        async def payment(ctx: duro.OrchestrationContext, _: None) -> str:
            await ctx.wait_for_event("go")
            return await ctx.schedule_activity(second)

        return registry

    def build_waiting(second: str) -> duro.Registry:
        registry = build(second)

        @registry.orchestration(name="payment2")
        async def payment2(ctx: duro.OrchestrationContext, _: None) -> str:
            await ctx.schedule_activity(second)
            return await ctx.wait_for_event("go")

        return registry

    async with runtime(store, build_waiting("charge"), clock):
        await client.start_orchestration("rp-6", "payment2")
        await history_has(client, "rp-6", ActivityCompleted)
    async with runtime(store, build_waiting("refund"), clock, execution_cache_size=0):
        await client.raise_event("rp-6", "go", "now")
        error = await failed(client, "rp-6")
    assert error.category is duro.ErrorCategory.CONFIGURATION
    assert error.error_type == "NondeterminismError"
    assert "'rp-6'" in error.message
    assert "position 2" in error.message
    assert "activity 'charge'" in error.message and "activity 'refund'" in error.message


async def test_replacing_an_activity_with_a_timer_is_nondeterminism(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    def build(use_timer: bool) -> duro.Registry:
        registry = duro.Registry()

        @registry.activity
        async def work(ctx: duro.ActivityContext, _: None) -> None:
            return None

        @registry.orchestration
        async def flow(ctx: duro.OrchestrationContext, _: None) -> str:
            if use_timer:
                await ctx.schedule_timer(1)
            else:
                await ctx.schedule_activity(work)
            return await ctx.wait_for_event("go")

        return registry

    async with runtime(store, build(False), clock):
        await client.start_orchestration("rp-7", "flow")
        await history_has(client, "rp-7", ActivityCompleted)
    async with runtime(store, build(True), clock):
        await client.raise_event("rp-7", "go")
        error = await failed(client, "rp-7")
    assert error.error_type == "NondeterminismError"
    assert "activity 'work'" in error.message and "a timer" in error.message


async def test_dropping_a_recorded_step_is_nondeterminism(
    store: Provider, client: duro.Client, clock: VirtualClock
) -> None:
    def build(with_step: bool) -> duro.Registry:
        registry = duro.Registry()

        @registry.activity
        async def work(ctx: duro.ActivityContext, _: None) -> None:
            return None

        @registry.orchestration
        async def flow(ctx: duro.OrchestrationContext, _: None) -> str:
            if with_step:
                await ctx.schedule_activity(work)
            return await ctx.wait_for_event("go")

        return registry

    async with runtime(store, build(True), clock):
        await client.start_orchestration("rp-8", "flow")
        await history_has(client, "rp-8", ActivityCompleted)
    async with runtime(store, build(False), clock):
        await client.raise_event("rp-8", "go")
        error = await failed(client, "rp-8")
    assert error.category is duro.ErrorCategory.CONFIGURATION
    assert error.error_type == "NondeterminismError"
    assert "activity 'work'" in error.message
