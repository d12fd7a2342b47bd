"""Sub-orchestrations: a parent runs one child orchestration per shipment and waits for all.

A child is a full orchestration with its own instance id (here ``<order>-<warehouse>``), its
own history and status; the parent awaits its output like an activity's. A child that fails
raises ``SubOrchestrationFailedError`` in the parent, which can handle it. Run it with
``python -m samples.sub_orchestrations``.
"""

from __future__ import annotations

import anyio
import msgspec

import duro

registry = duro.Registry()


class Shipment(msgspec.Struct):
    warehouse: str
    items: list[str]


class Order(msgspec.Struct):
    order_id: str
    shipments: list[Shipment]


@registry.activity
async def pick(ctx: duro.ActivityContext, shipment: Shipment) -> int:
    if shipment.warehouse == "flooded":
        raise RuntimeError("warehouse closed")
    return len(shipment.items)


@registry.activity
async def label(ctx: duro.ActivityContext, warehouse: str) -> str:
    return f"LBL-{warehouse.upper()}"


@registry.orchestration
async def ship(ctx: duro.OrchestrationContext, shipment: Shipment) -> str:
    picked = await ctx.schedule_activity(pick, shipment)
    tracking = await ctx.schedule_activity(label, shipment.warehouse)
    return f"{tracking} ({picked} items)"


@registry.orchestration
async def fulfil(ctx: duro.OrchestrationContext, order: Order) -> list[str]:
    children = [
        ctx.schedule_sub_orchestration(
            ship, shipment, instance_id=f"{order.order_id}-{shipment.warehouse}"
        )
        for shipment in order.shipments
    ]
    results = await ctx.join(children, return_exceptions=True)
    return [
        f"{r.instance_id} failed: {r.error_type}"
        if isinstance(r, duro.SubOrchestrationFailedError)
        else str(r)
        for r in results
    ]


async def main() -> None:
    store = duro.InMemoryProvider()
    order = Order(
        "order-7",
        [
            Shipment("berlin", ["lamp", "desk"]),
            Shipment("lyon", ["chair"]),
            Shipment("flooded", []),
        ],
    )
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("order-7", fulfil, order)
        status = await client.wait_for_orchestration("order-7", timeout=10, output_type=list[str])
        child = await client.get_status("order-7-berlin")
    print(f"order-7: {status.state.value}")
    for line in status.output:
        print(f"  {line}")
    print(f"order-7-berlin: an instance of {child.name!r}, parent {child.parent_instance_id}")
    expected = [
        "LBL-BERLIN (2 items)",
        "LBL-LYON (1 items)",
        "order-7-flooded failed: ActivityFailedError",
    ]
    if status.output != expected:
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
