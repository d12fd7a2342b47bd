"""A tour of duro on the embedded SQLite store: one order, end to end.

Run it with ``python -m samples.demo`` (a fresh database file in a temporary directory) or
``python -m samples.demo --db orders.db`` to keep the file and look at it afterwards.

The ``order_workflow`` orchestration shows, in order:

* an activity chain (reserve stock, then charge the card),
* a retry: the payment gateway fails twice, ``RetryPolicy`` retries it after durable back-off
  timers,
* a fan-out / fan-in: one ``pack_item`` activity per line, awaited together with ``ctx.join``,
* a sub-orchestration (``shipping_workflow``) that waits on a durable timer,
* an external event (``delivered``) that the client raises *before* the orchestration waits
  for it: it is buffered in history and not lost,
* custom status (the client watches the stages change) and the durable KV map.

A second order with a declined card shows a failure: the activity error reaches the
orchestration as ``duro.ActivityFailedError`` and, uncaught, fails the instance.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio
import msgspec

import duro

registry = duro.Registry()


class Line(msgspec.Struct):
    sku: str
    quantity: int


class Order(msgspec.Struct):
    order_id: str
    card: str
    lines: list[Line]


class CardDeclined(Exception):
    """The payment provider refused the card: retrying will not help."""


# -- activities: where the I/O would be --------------------------------------------------------


@registry.activity
async def reserve_stock(ctx: duro.ActivityContext, lines: list[Line]) -> int:
    return sum(line.quantity for line in lines)


@registry.activity
def charge_card(ctx: duro.ActivityContext, order: Order) -> str:  # plain def: runs in a thread
    if order.card == "declined":
        raise CardDeclined(f"card for order {order.order_id} was declined")
    if ctx.attempt < 3:  # a flaky gateway: the first two attempts time out
        raise ConnectionError(f"payment gateway timed out (attempt {ctx.attempt})")
    return f"pay-{order.order_id}-{ctx.attempt}"


@registry.activity
def pack_item(ctx: duro.ActivityContext, line: Line) -> str:  # plain def: runs in a thread
    return f"box[{line.quantity} x {line.sku}]"


@registry.activity
async def book_courier(ctx: duro.ActivityContext, boxes: list[str]) -> str:
    return f"TRK-{ctx.instance_id.removesuffix('-shipping').upper()}-{len(boxes)}"


# -- orchestrations: deterministic coordination, replayed from history --------------------------


@registry.orchestration
async def shipping_workflow(ctx: duro.OrchestrationContext, boxes: list[str]) -> str:
    await ctx.schedule_timer(0.5)  # durable: survives a restart, fires once
    tracking: str = await ctx.schedule_activity(book_courier, boxes)
    return tracking


PAYMENT_RETRY = duro.RetryPolicy(
    max_attempts=4,
    initial_interval=0.1,
    backoff_coefficient=2.0,
    non_retryable=[CardDeclined],
)


@registry.orchestration
async def order_workflow(ctx: duro.OrchestrationContext, order: Order) -> dict[str, object]:
    ctx.set_custom_status({"stage": "reserving"})
    reserved = await ctx.schedule_activity(reserve_stock, order.lines)

    ctx.set_custom_status({"stage": "charging"})
    payment_id = await ctx.schedule_activity(charge_card, order, retry=PAYMENT_RETRY)
    ctx.kv.set("payment_id", payment_id)

    ctx.set_custom_status({"stage": "packing"})
    boxes = await ctx.join([ctx.schedule_activity(pack_item, line) for line in order.lines])

    ctx.set_custom_status({"stage": "shipping"})
    tracking = await ctx.schedule_sub_orchestration(
        shipping_workflow, boxes, instance_id=f"{ctx.instance_id}-shipping"
    )
    ctx.kv.set("tracking", tracking)

    ctx.set_custom_status({"stage": "awaiting delivery"})
    delivered = await ctx.wait_for_event("delivered")

    ctx.set_custom_status({"stage": "done"})
    return {
        "items": reserved,
        "payment": payment_id,
        "boxes": boxes,
        "tracking": tracking,
        "signed_by": delivered["signed_by"],
    }


# -- the client side -----------------------------------------------------------------------------


def describe(event: duro.history.HistoryEvent) -> str:
    """One history event as one short line."""
    kind = type(event).__name__
    fields = {
        f: getattr(event, f)
        for f in ("seq", "name", "attempt", "key", "instance_id", "error")
        if getattr(event, f, None) is not None
    }
    if "error" in fields:
        fields["error"] = fields["error"].error_type
    if isinstance(event, duro.history.TimerCreated):
        fields["fires_in"] = f"{(event.fire_at - event.ts) / 1000:g}s"
    detail = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{event.event_id:>3}  {kind:<26} {detail}"


async def run(db_path: Path, run_tag: str) -> None:
    store = duro.SqliteProvider(db_path)
    order_id = f"order-1{run_tag}"
    bad_id = f"order-2{run_tag}"
    async with store, duro.Runtime(store, registry) as runtime:
        client = duro.Client(store)
        started = time.monotonic()

        order = Order(
            order_id=order_id,
            card="4242",
            lines=[Line(sku="tea", quantity=2), Line(sku="mug", quantity=1)],
        )
        await client.start_orchestration(order_id, order_workflow, order)
        await client.start_orchestration(bad_id, order_workflow, Order(bad_id, "declined", []))
        print(f"started {order_id} and {bad_id} on {db_path}")

        # Watch the custom status; raise the delivery event as soon as shipping starts,
        # while the orchestration is still busy with the sub-orchestration.
        status = await client.get_status(order_id)
        raised = False
        while not status.is_terminal:
            status = await client.wait_for_status_change(order_id, status, timeout=10)
            custom: dict[str, str] = status.custom_status or {}
            stage = custom.get("stage")
            print(f"  {order_id}: {status.state.value:<9} stage={stage}")
            if stage in ("shipping", "awaiting delivery") and not raised:
                await client.raise_event(order_id, "delivered", {"signed_by": "R. Jones"})
                print("  raised event 'delivered' (buffered until the orchestration waits)")
                raised = True

        bad = await client.wait_for_orchestration(bad_id, timeout=10)
        child = await client.get_status(f"{order_id}-shipping")

        print()
        for s in (status, child, bad):
            print(f"{s.instance_id}  [{s.name} v{s.version}]  state={s.state.value}")
            if s.error is not None:
                print(f"    error ({s.error.category.value}): {s.error}")
            else:
                print(f"    output: {s.output}")
        print(f"\nKV of {order_id}: {await client.get_values(order_id)}")

        history = await client.get_history(order_id)
        print(f"\nhistory of {order_id} ({len(history)} events):")
        for event in history:
            print("  " + describe(event))

        print(
            f"\n{runtime.turns_committed} turns committed, {runtime.activities_completed} "
            f"activity results reported, in {time.monotonic() - started:.2f} s"
        )
    if status.state is not duro.State.COMPLETED or bad.state is not duro.State.FAILED:
        sys.exit("the demo did not end as expected")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", type=Path, help="SQLite file to use (default: a temporary one)")
    args = parser.parse_args()
    if args.db is not None:
        # Instance ids must be unique per store: tag them so the demo can rerun on one file.
        anyio.run(run, args.db, f"-{time.strftime('%H%M%S')}")
        return
    with tempfile.TemporaryDirectory(prefix="duro-demo-") as tmp:
        anyio.run(run, Path(tmp) / "demo.db", "")


if __name__ == "__main__":
    main()
