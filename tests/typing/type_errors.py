"""Deliberate type errors: the checker must flag exactly the lines marked ``# E: <code>``.

``tests/test_typing.py`` runs mypy --strict on this file and compares the lines it reports
(and their error codes) with the markers, so an API that loses its types fails the suite.

Not here because no checker can flag it: a ``ctx.join`` of futures assigned to a list of the
wrong type (a join falls back to ``list[Any]`` so that mixed lists type-check).
"""

from __future__ import annotations

import msgspec

import duro

registry = duro.Registry()


class Receipt(msgspec.Struct):
    order_id: str


@registry.activity
async def charge(ctx: duro.ActivityContext, amount: int) -> Receipt:
    return Receipt("o-1")


@registry.activity
def render(ctx: duro.ActivityContext, receipt: Receipt) -> str:
    return receipt.order_id


@registry.activity
async def tick(ctx: duro.ActivityContext) -> int:
    return 1


@registry.orchestration
async def child(ctx: duro.OrchestrationContext, n: int) -> int:
    return n


@registry.orchestration
async def wrong_inputs(ctx: duro.OrchestrationContext, _: None) -> None:
    ctx.schedule_activity(charge, "12")  # E: arg-type
    ctx.schedule_activity(render, {"order_id": "o-1"})  # E: arg-type
    ctx.schedule_activity(charge)  # E: arg-type
    ctx.schedule_activity(tick, 3)  # E: arg-type
    ctx.schedule_activity(child, 3)  # E: arg-type
    ctx.schedule_sub_orchestration(child, "3")  # E: arg-type
    ctx.schedule_sub_orchestration(charge, 3)  # E: arg-type
    ctx.start_orchestration(child, [3], instance_id="c")  # E: arg-type


@registry.orchestration
async def wrong_results(ctx: duro.OrchestrationContext, _: None) -> str:
    receipt = await ctx.schedule_activity(charge, 12)
    total: int = receipt  # E: assignment
    # Where the expected type flows into the call, mypy reports the argument that disagrees.
    count: str = await ctx.schedule_activity(tick)  # E: arg-type
    approved: str = await ctx.wait_for_event("approved", type=bool)  # E: arg-type
    job: int = await ctx.dequeue_event("jobs", type=Receipt)  # E: arg-type
    n: int = ctx.kv.get("n", type=int)  # E: assignment
    del total, count, approved, job, n
    return await ctx.schedule_activity(charge, 1)  # E: arg-type


async def client_side(client: duro.Client) -> None:
    await client.start_orchestration("c-1", child, "3")  # E: arg-type
    status = await client.wait_for_orchestration("c-1", output_type=Receipt)
    amount: int = status.output  # E: assignment
    value: str = await client.get_value("c-1", "n", 0, type=int)  # E: arg-type
    del amount, value
