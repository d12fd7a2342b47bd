"""The orchestrations the golden histories in ``tests/histories/`` were recorded with.

This code is what the golden tests replay the recorded events against: editing a durable call
here must make the matching golden test fail. Activities never run in these tests (the
recorders play their results), so most are registered by name only, on one stub.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duro

registry = duro.Registry()

previous_deployment = duro.Registry()
"""``shipping`` as it was before someone edited it in place instead of adding a version."""


async def _played(ctx: duro.ActivityContext, data: Any) -> Any:
    """Never runs: recorders play activity results straight into the engine."""
    raise NotImplementedError


for _name in (
    "book_flight",
    "book_hotel",
    "charge_card",
    "cancel_flight",
    "cancel_hotel",
    "file_expense",
    "handle_order",
    "pick_and_pack",
    "rate_card",
    "reserve_stock",
    "fraud_check",
    "ship",
    "export_rows",
    "render_report",
):
    registry.activity(name=_name)(_played)
for _name in ("reserve_stock", "ship"):
    previous_deployment.activity(name=_name)(_played)


@registry.activity
async def step(ctx: duro.ActivityContext, n: int) -> int:
    return n + 1


@registry.orchestration
async def golden_chain(ctx: duro.OrchestrationContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.schedule_activity(step, n)
    return n


@registry.orchestration
async def golden_fan_out(ctx: duro.OrchestrationContext, _: None) -> Any:
    async def branch(i: int) -> int:
        await ctx.schedule_timer(i)
        return await ctx.schedule_activity(step, i)

    results = await ctx.join([branch(1), branch(2)])
    index, value = await ctx.select(ctx.wait_for_event("go"), ctx.schedule_timer(60))
    ctx.kv.set("results", results)
    ctx.set_custom_status({"index": index})
    return [results, index, value]


CHARGE_RETRY = duro.RetryPolicy(
    max_attempts=3, initial_interval=5.0, non_retryable=["CardDeclined"]
)


@registry.orchestration
async def trip_saga(ctx: duro.OrchestrationContext, trip: dict[str, Any]) -> dict[str, str]:
    """Book a flight and a hotel, then charge; if charging fails, undo both bookings."""
    # One session: both bookings go through the supplier connection of a single worker.
    session = f"trip-{trip['id']}"
    undo: list[tuple[str, str]] = []
    try:
        flight = await ctx.schedule_activity("book_flight", trip["flight"], session=session)
        undo.append(("cancel_flight", flight))
        hotel = await ctx.schedule_activity("book_hotel", trip["hotel"], session=session)
        undo.append(("cancel_hotel", hotel))
        await ctx.schedule_activity("charge_card", trip["amount"], retry=CHARGE_RETRY)
    except duro.ActivityFailedError:
        await ctx.join([ctx.schedule_activity(name, ref) for name, ref in reversed(undo)])
        raise
    return {"flight": flight, "hotel": hotel}


REMINDER_EVERY = timedelta(days=1)
MAX_REMINDERS = 3


@registry.orchestration
async def expense_approval(ctx: duro.OrchestrationContext, expense: dict[str, Any]) -> Any:
    """Ask a manager to approve an expense, remind them daily, file it once approved."""
    ctx.set_custom_status({"stage": "awaiting approval", "reminders": 0})
    # Mail goes out through workers tagged "email"; this worker does not register the activity.
    await ctx.schedule_activity("notify_approver", expense, tag="email")
    reminders = 0
    while True:
        index, decision = await ctx.select(
            ctx.wait_for_event("decision"), ctx.schedule_timer(REMINDER_EVERY)
        )
        if index == 0:
            break
        if reminders == MAX_REMINDERS:
            return "expired"
        reminders += 1
        ctx.set_custom_status({"stage": "awaiting approval", "reminders": reminders})
        await ctx.schedule_activity("notify_approver", expense, tag="email")
    if not decision["approved"]:
        return "rejected"
    ctx.set_custom_status({"stage": "filing"})
    return await ctx.schedule_activity("file_expense", expense)


@registry.orchestration
async def inventory(ctx: duro.OrchestrationContext, _: None) -> dict[str, Any]:
    """A stock ledger in durable KV, driven by "command" events until it is closed."""
    while True:
        command = await ctx.wait_for_event("command")
        op = command["op"]
        if op == "close":
            return ctx.kv.items()
        if op == "add":
            # Read-modify-write: replay must rebuild the KV from history to get this right.
            ctx.kv.set(command["sku"], ctx.kv.get(command["sku"], 0) + command["qty"])
        elif op == "drop":
            ctx.kv.delete(command["sku"])
        elif op == "reset":
            ctx.kv.clear()
        ctx.set_custom_status({"skus": len(ctx.kv)})


MAILBOX_BATCH = 3


@registry.orchestration
async def order_mailbox(ctx: duro.OrchestrationContext, state: dict[str, int]) -> int:
    """Handle "orders" one by one, continuing as new every few so history stays short.

    A "stop" event ends it, but only once the mailbox is empty: the dequeue comes first in
    the select, so buffered orders win over a buffered stop.
    """
    handled = state["handled"]
    for _ in range(MAILBOX_BATCH):
        index, order = await ctx.select(ctx.dequeue_event("orders"), ctx.wait_for_event("stop"))
        if index == 1:
            return handled
        await ctx.schedule_activity("handle_order", order)
        handled += 1
    # Pinned: the state format above belongs to this version.
    ctx.continue_as_new({"handled": handled}, version=ctx.version)


QUOTE_DEADLINE = 15
CARRIER_API_TIMEOUT = 10


@registry.orchestration
async def fulfilment(ctx: duro.OrchestrationContext, order: dict[str, Any]) -> dict[str, Any]:
    """Pack and insure an order in child orchestrations, then ship with a carrier quote if
    one arrives before the deadline. Insurance is optional: its failure is noted, not fatal."""
    ctx.start_orchestration("audit", order, instance_id=f"audit-{order['id']}")
    parcels, insurance = await ctx.join(
        [
            ctx.schedule_sub_orchestration(pack_order, order["items"]),
            # Owned by another team's workers; not registered here.
            ctx.schedule_sub_orchestration("insure_order", order["value"]),
        ],
        return_exceptions=True,
    )
    if isinstance(parcels, BaseException):
        raise parcels
    index, quote = await ctx.select(
        ctx.schedule_sub_orchestration(carrier_quote, order["carrier"]),
        ctx.schedule_timer(QUOTE_DEADLINE),
    )
    return {
        "parcels": parcels,
        "insured": not isinstance(insurance, BaseException),
        "shipping": quote if index == 0 else "flat rate",
    }


@registry.orchestration
async def pack_order(ctx: duro.OrchestrationContext, items: list[str]) -> int:
    parcels: int = await ctx.schedule_activity("pick_and_pack", items)
    return parcels


@registry.orchestration
async def carrier_quote(ctx: duro.OrchestrationContext, carrier: str) -> Any:
    """Ask the carrier's API (workers tagged "carrier-api"); if it is slow, use the rate card."""
    index, price = await ctx.select(
        ctx.schedule_activity("fetch_quote", carrier, tag="carrier-api"),
        ctx.schedule_timer(CARRIER_API_TIMEOUT),
    )
    if index == 1:
        price = await ctx.schedule_activity("rate_card", carrier)
    return price


@registry.orchestration
async def shipping(ctx: duro.OrchestrationContext, order_id: str) -> Any:
    """Edited in place after instances had started: the fraud check shifts every later step."""
    await ctx.schedule_activity("reserve_stock", order_id)
    await ctx.schedule_activity("fraud_check", order_id)
    return await ctx.schedule_activity("ship", order_id)


@previous_deployment.orchestration(name="shipping")
async def shipping_before_the_edit(ctx: duro.OrchestrationContext, order_id: str) -> Any:
    await ctx.schedule_activity("reserve_stock", order_id)
    return await ctx.schedule_activity("ship", order_id)


@registry.orchestration
async def nightly_report(ctx: duro.OrchestrationContext, day: str) -> Any:
    rows = await ctx.schedule_activity("export_rows", day)
    return await ctx.schedule_activity("render_report", {"day": day, "rows": rows})


@registry.orchestration
async def dispatcher(ctx: duro.OrchestrationContext, batch: int) -> Any:
    """Forward each request to the worker instance it names: an external event for its
    answer, a mailbox message for its log. Counts what it forwarded in its custom status,
    which continue-as-new carries into the next execution."""
    forwarded = ctx.get_custom_status(type=int) or 0
    for _ in range(batch):
        request = await ctx.dequeue_event("requests")
        ctx.raise_event(request["to"], "task", request["body"])
        ctx.enqueue_event(request["to"], "log", {"from": ctx.instance_id, "n": forwarded})
        forwarded += 1
        ctx.set_custom_status(forwarded)
    if forwarded < 2 * batch:
        ctx.continue_as_new(batch)
    return ctx.get_custom_status()
