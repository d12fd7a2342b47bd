"""``RuntimeOptions.max_history_events``: an execution that outgrows it fails whole, with an
error that names the limit and the way out (``continue_as_new``)."""

from __future__ import annotations

import pytest

import duro
from duro.history import ActivityCompleted, OrchestrationFailed
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, failed, of_type, runtime

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.activity
    async def echo(ctx: duro.ActivityContext, n: int) -> int:
        return n

    @registry.orchestration
    async def grower(ctx: duro.OrchestrationContext, steps: int) -> int:
        total = 0
        for n in range(steps):
            total += await ctx.schedule_activity(echo, n)
        return total

    @registry.orchestration
    async def roller(ctx: duro.OrchestrationContext, left: int) -> int:
        for n in range(3):
            await ctx.schedule_activity(echo, n)
        if left > 0:
            ctx.continue_as_new(left - 1)
        return ctx.execution_id


async def test_an_execution_past_the_limit_fails_naming_it_and_sends_nothing_more(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock, max_history_events=10):
        await client.start_orchestration("big", "grower", 50)
        error = await failed(client, "big")
    assert error.error_type == "HistoryLimitExceeded" and not error.retryable
    assert "recorded 12 history events, more than the limit of 10" in error.message
    assert "RuntimeOptions.max_history_events" in error.message
    assert "ctx.continue_as_new" in error.message
    history = await client.get_history("big")
    assert isinstance(history[-1], OrchestrationFailed) and len(history) == 13
    assert len(of_type(history, ActivityCompleted)) == 5
    # the work the last turn scheduled was withdrawn with the failure, not sent
    depths = await store.queue_depths()
    assert (depths.worker, depths.locked) == (0, 0)


async def test_continue_as_new_keeps_each_execution_under_the_limit(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock, max_history_events=10):
        await client.start_orchestration("rolling", "roller", 4)
        assert await completed(client, "rolling") == 5


def test_the_limit_is_validated() -> None:
    with pytest.raises(ValueError, match="max_history_events must be at least 10, got 3"):
        duro.RuntimeOptions(max_history_events=3)
    assert duro.RuntimeOptions().max_history_events == 50_000
