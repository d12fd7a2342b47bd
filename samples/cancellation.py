"""Cancellation: a client cancels a running instance; its running activity is told to stop,
its sub-orchestration is cancelled with it, and the instance ends as ``FAILED`` with category
``CANCELLED``. Activities stop cooperatively: an ``async def`` activity awaits
``ctx.wait_cancelled()`` (or is cancelled after a grace period), a plain ``def`` one polls
``ctx.is_cancelled``. Run it with ``python -m samples.cancellation``.
"""

from __future__ import annotations

import time

import anyio

import duro

registry = duro.Registry()
stopped: list[str] = []


@registry.activity
def export_rows(ctx: duro.ActivityContext, table: str) -> int:  # plain def: polls
    rows = 0
    while not ctx.is_cancelled:
        rows += 1
        time.sleep(0.01)  # one batch of work
    stopped.append(f"export of {table} stopped after {rows} batches: {ctx.cancel_reason}")
    return rows


@registry.orchestration
async def nightly_report(ctx: duro.OrchestrationContext, day: str) -> str:
    ctx.set_custom_status("exporting")
    report = ctx.schedule_sub_orchestration(render_report, day, instance_id=f"{day}-render")
    await ctx.join([ctx.schedule_activity(export_rows, "orders"), report])
    return "done"


@registry.orchestration
async def render_report(ctx: duro.OrchestrationContext, day: str) -> str:
    await ctx.schedule_timer(3600)  # waits for an hour: it will be cancelled long before
    return f"report for {day}"


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("report-1", nightly_report, "2025-01-31")
        status = await client.get_status("report-1")
        while status.custom_status != "exporting":
            status = await client.wait_for_status_change("report-1", status, timeout=10)
        await anyio.sleep(0.1)  # let the export run a little
        await client.cancel_orchestration("report-1", reason="the operator stopped it")
        status = await client.wait_for_orchestration("report-1", timeout=10)
        child = await client.wait_for_orchestration("2025-01-31-render", timeout=10)
    # Leaving the block waited for the activity, which noticed in its own thread.
    print(f"report-1: {status.state.value}, {status.error}")
    print(f"2025-01-31-render: {child.state.value}, {child.error}")
    print(f"activity: {stopped[0]}")
    assert status.error is not None and child.error is not None
    if (status.error.category, child.error.category) != (duro.ErrorCategory.CANCELLED,) * 2:
        raise SystemExit("cancellation did not reach the instance and its child")


if __name__ == "__main__":
    anyio.run(main)
