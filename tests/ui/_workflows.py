"""Real workflows that leave a store with everything the view draws: a fan-out with an
activity that fails and is retried, a sub-orchestration, timers, an external event,
continue-as-new, KV and custom status, a failed instance and instances waiting for events."""

from __future__ import annotations

from dataclasses import dataclass

import duro
from duro.providers import Provider

registry = duro.Registry()

TOUR = "tour-1"
BROKEN = "broken-1"
WAITING = ("waiting-1", "waiting-2", "waiting-3")


@registry.activity
async def work(ctx: duro.ActivityContext, n: int) -> int:
    return n * 10


@registry.activity
async def flaky(ctx: duro.ActivityContext, n: int) -> int:
    if ctx.attempt < 2:
        raise ConnectionError(f"gateway timed out (attempt {ctx.attempt})")
    return n


class OutOfStock(Exception):
    """Retrying cannot help."""


@registry.activity
async def reserve(ctx: duro.ActivityContext, sku: str) -> None:
    raise OutOfStock(f"no {sku} left")


@registry.orchestration
async def child(ctx: duro.OrchestrationContext, n: int) -> int:
    await ctx.schedule_timer(0.05)
    return n + 1


@registry.orchestration
async def tour(ctx: duro.OrchestrationContext, round: int) -> dict[str, object]:
    if round == 1:  # the first execution only hands over to the second
        ctx.kv.set("rounds", 1)
        ctx.continue_as_new(2)
    ctx.set_custom_status({"stage": "fan-out"})
    results = await ctx.join(
        [
            ctx.schedule_activity(work, 1),
            ctx.schedule_activity(work, 2),
            ctx.schedule_activity(
                flaky, 3, retry=duro.RetryPolicy(max_attempts=3, initial_interval=0.05)
            ),
        ]
    )
    ctx.set_custom_status({"stage": "child"})
    grown = await ctx.schedule_sub_orchestration(child, 5, instance_id=f"{ctx.instance_id}-child")
    await ctx.schedule_timer(0.05)
    ctx.set_custom_status({"stage": "waiting for go"})
    go = await ctx.wait_for_event("go")
    ctx.kv.set("approved_by", go)
    ctx.set_custom_status({"stage": "done"})
    return {"results": results, "child": grown, "approved_by": go}


@registry.orchestration
async def broken(ctx: duro.OrchestrationContext, sku: str) -> None:
    await ctx.schedule_activity(reserve, sku)


@registry.orchestration
async def approval(ctx: duro.OrchestrationContext, amount: int) -> str:
    ctx.set_custom_status({"stage": "waiting for approval"})
    decision: str = await ctx.wait_for_event("approve", type=str)
    return f"{amount} approved by {decision}"


def options() -> duro.RuntimeOptions:
    return duro.RuntimeOptions(
        poll_timeout=0.05, idle_backoff_min=0.0, idle_backoff_max=0.01, shutdown_grace_period=1.0
    )


@dataclass(frozen=True)
class Filled:
    tour: str = TOUR
    broken: str = BROKEN
    waiting: tuple[str, ...] = WAITING


async def fill(store: Provider) -> Filled:
    """Run the workflows on ``store`` (a runtime must be running on it): the tour and the
    broken order end; the approvals are left waiting for their event."""
    client = duro.Client(store)
    await client.start_orchestration(TOUR, tour, 1)
    await client.start_orchestration(BROKEN, broken, "mug")
    status = await client.get_status(TOUR)
    while status.custom_status != {"stage": "waiting for go"}:
        status = await client.wait_for_status_change(TOUR, status, timeout=20)
    await client.raise_event(TOUR, "go", "ana")
    await client.wait_for_orchestration(TOUR, timeout=20)
    await client.wait_for_orchestration(BROKEN, timeout=20)
    for n, instance_id in enumerate(WAITING, start=1):
        await client.start_orchestration(instance_id, approval, 100 * n)
        status = await client.get_status(instance_id)
        while status.custom_status is None:
            status = await client.wait_for_status_change(instance_id, status, timeout=20)
    return Filled()
