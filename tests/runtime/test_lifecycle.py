"""How a Runtime starts and stops: as a context manager, or run in a task group of the caller's."""

from __future__ import annotations

import anyio
import pytest

import duro

pytestmark = pytest.mark.anyio

registry = duro.Registry()


@registry.activity
async def double(ctx: duro.ActivityContext, n: int) -> int:
    return n * 2


@registry.orchestration
async def doubler(ctx: duro.OrchestrationContext, n: int) -> int:
    result: int = await ctx.schedule_activity(double, n)
    return result


def test_a_runtime_is_built_outside_any_event_loop() -> None:
    runtime = duro.Runtime(duro.InMemoryProvider(), registry)
    assert runtime.in_flight == 0


async def test_run_in_the_callers_task_group_until_shutdown() -> None:
    store = duro.InMemoryProvider()
    runtime = duro.Runtime(store, registry)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        client = duro.Client(store)
        await client.start_orchestration("i1", doubler, 21)
        status = await client.wait_for_orchestration("i1", timeout=10)
        await runtime.shutdown()
    assert status.output == 42


async def test_shutdown_before_start_returns_at_once() -> None:
    runtime = duro.Runtime(duro.InMemoryProvider(), registry)
    await runtime.shutdown()


async def test_a_runtime_runs_once() -> None:
    runtime = duro.Runtime(duro.InMemoryProvider(), registry)
    async with runtime:
        with pytest.raises(RuntimeError, match="already started"):
            await runtime.start()
    with pytest.raises(RuntimeError, match="already started"):
        await runtime.start()


async def test_a_second_shutdown_is_a_no_op() -> None:
    runtime = duro.Runtime(duro.InMemoryProvider(), registry)
    await runtime.start()
    await runtime.shutdown()
    await runtime.shutdown()
