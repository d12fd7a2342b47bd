"""Rewind: repair a failed instance and run it on from the step that failed.

An order reserves stock, then charges the card. The payment service is misconfigured, so
the charge fails and so does the instance. Once the configuration is fixed,
``Client.rewind_orchestration`` takes the instance back to before the failed charge: the
charge runs again, the reservation keeps its recorded result (it does not run twice), and the
history keeps both the failure and the rewind. Run it with ``python -m samples.rewind``.
"""

from __future__ import annotations

import anyio

import duro
from duro.history import ActivityScheduled, ExecutionRewound

registry = duro.Registry()
PAYMENTS = {"configured": False}
"""Stands in for the fix an operator deploys between the failure and the rewind."""
CALLS: list[str] = []


@registry.activity
async def reserve(ctx: duro.ActivityContext, item: str) -> str:
    CALLS.append("reserve")
    return f"reserved {item}"


@registry.activity
async def charge(ctx: duro.ActivityContext, amount: int) -> str:
    CALLS.append("charge")
    if not PAYMENTS["configured"]:
        raise RuntimeError("payment service: no API key configured")
    return f"charged {amount}"


@registry.orchestration
async def order(ctx: duro.OrchestrationContext, amount: int) -> list[str]:
    reserved = await ctx.schedule_activity(reserve, "2 x mug")
    charged = await ctx.schedule_activity(charge, amount)
    return [reserved, charged]


async def main() -> None:
    store = duro.InMemoryProvider()
    client = duro.Client(store)
    async with duro.Runtime(store, registry):
        await client.start_orchestration("order-1", order, 24)
        failed = await client.wait_for_orchestration("order-1", timeout=10)
        print(f"order-1: {failed.state.value}: {failed.error}")

        PAYMENTS["configured"] = True  # the fix
        await client.rewind_orchestration("order-1", reason="API key configured")
        # The rewind takes effect at the instance's next turn: until then it reads FAILED.
        with anyio.fail_after(10):
            while (await client.get_status("order-1")).state is duro.State.FAILED:  # noqa: ASYNC110 - a store, not an in-process event
                await anyio.sleep(0.01)
        status = await client.wait_for_orchestration("order-1", timeout=10)
        history = await client.get_history("order-1")

    steps = [e.name for e in history if isinstance(e, ActivityScheduled)]
    rewinds = [e for e in history if isinstance(e, ExecutionRewound)]
    print(f"steps recorded: {steps}; activity calls: {CALLS}")
    print(f"rewound: events {rewinds[0].undone_from}-{rewinds[0].undone_through} undone")
    if status.output != ["reserved 2 x mug", "charged 24"] or CALLS.count("reserve") != 1:
        raise SystemExit(f"unexpected result: {status}, calls {CALLS}")
    print(f"order-1: {status.state.value} after rewind -> {status.output}")


if __name__ == "__main__":
    anyio.run(main)
