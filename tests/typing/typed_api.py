"""What a type checker infers from the typed API: mypy --strict must accept every line.

``assert_type`` fails the check when the inferred type differs, so this file pins the types
users see. Its counterpart ``type_errors.py`` pins what must be rejected.
"""

from __future__ import annotations

from typing import Any, assert_type

import msgspec

import duro
import duro.testing

registry = duro.Registry()


class Receipt(msgspec.Struct):
    order_id: str
    amount: int


@registry.activity
async def charge(ctx: duro.ActivityContext, amount: int) -> Receipt:
    return Receipt("o-1", amount)


@registry.activity
def render(ctx: duro.ActivityContext, receipt: Receipt) -> str:  # plain def
    return f"{receipt.order_id}: {receipt.amount}"


@registry.activity
async def tick(ctx: duro.ActivityContext) -> int:
    return 1


@registry.activity
def ping(ctx: duro.ActivityContext, _: None) -> None:
    return None


@registry.activity(name="ChargeCard")
async def charge_card(ctx: duro.ActivityContext, amount: int) -> str:
    return "ok"


@registry.orchestration
async def child(ctx: duro.OrchestrationContext, n: int) -> list[int]:
    return [n]


@registry.orchestration
async def no_input(ctx: duro.OrchestrationContext) -> None:
    return None


@registry.orchestration
async def checkout(ctx: duro.OrchestrationContext, amount: int) -> str:
    assert_type(ctx.schedule_activity(charge, amount), duro.DurableFuture[Receipt])
    receipt = await ctx.schedule_activity(charge, amount)
    assert_type(receipt, Receipt)
    assert_type(ctx.schedule_activity(render, receipt), duro.DurableFuture[str])
    assert_type(ctx.schedule_activity(tick), duro.DurableFuture[int])
    assert_type(ctx.schedule_activity(ping), duro.DurableFuture[None])
    assert_type(ctx.schedule_activity(ping, None), duro.DurableFuture[None])
    assert_type(ctx.schedule_activity(charge, input=amount), duro.DurableFuture[Receipt])
    retried = ctx.schedule_activity(charge, amount, retry=duro.RetryPolicy(max_attempts=3))
    assert_type(retried, duro.DurableFuture[Receipt])
    assert_type(ctx.schedule_activity("ChargeCard", amount), duro.DurableFuture[Any])

    assert_type(ctx.schedule_sub_orchestration(child, 2), duro.DurableFuture[list[int]])
    assert_type(ctx.schedule_sub_orchestration(no_input), duro.DurableFuture[None])
    assert_type(ctx.schedule_sub_orchestration("child", 2), duro.DurableFuture[Any])
    ctx.start_orchestration(child, 3, instance_id="c-3")

    assert_type(ctx.wait_for_event("approved", type=bool), duro.DurableFuture[bool])
    assert_type(ctx.wait_for_event("approved"), duro.DurableFuture[Any])
    assert_type(ctx.dequeue_event("jobs", type=Receipt), duro.DurableFuture[Receipt])
    assert_type(ctx.dequeue_event("jobs", type=list[int]), duro.DurableFuture[list[int]])

    assert_type(ctx.kv.get("n", type=int), int | None)
    assert_type(ctx.kv.get("n", 0, type=int), int)
    assert_type(ctx.kv.get("n"), Any)
    assert_type(await ctx.kv.get_from("other", "n", type=int), int | None)
    assert_type(await ctx.kv.get_from("other", "n", 0, type=int), int)
    assert_type(ctx.kv.prune(updated_before=ctx.utc_now()), int)

    futures = [ctx.schedule_activity(charge, n) for n in range(3)]
    assert_type(ctx.join(futures), duro.DurableFuture[list[Receipt]])
    both = ctx.join(futures, return_exceptions=True)
    assert_type(both, duro.DurableFuture[list[Receipt | BaseException]])
    mixed = ctx.join([ctx.schedule_activity(tick), ctx.schedule_activity(render, receipt)])
    assert_type(mixed, duro.DurableFuture[list[Any]])
    assert_type(
        ctx.select(ctx.schedule_timer(1), tick_later(ctx)), duro.DurableFuture[tuple[int, Any]]
    )
    return await ctx.schedule_activity(render, receipt)


async def tick_later(ctx: duro.OrchestrationContext) -> int:
    return await ctx.schedule_activity(tick)


async def client_side(client: duro.Client) -> None:
    assert_type(await client.start_orchestration("c-1", checkout, 5), str)
    await client.start_orchestration("c-2", no_input)
    await client.start_orchestration("c-3", "checkout", "anything goes by name")

    status = await client.wait_for_orchestration("c-1", output_type=str)
    assert_type(status, duro.OrchestrationStatus[str])
    assert_type(status.output, str)
    untyped = await client.wait_for_orchestration("c-1", timeout=5)
    assert_type(untyped.output, Any)
    assert_type(
        await client.get_status("c-1", output_type=Receipt), duro.OrchestrationStatus[Receipt]
    )
    changed = await client.wait_for_status_change("c-1", untyped, output_type=int)
    assert_type(changed.output, int)

    assert_type(await client.get_value("c-1", "n", type=int), int | None)
    assert_type(await client.get_value("c-1", "n", 0, type=int), int)
    assert_type(await client.get_value("c-1", "n"), Any)
    assert_type(await client.wait_for_value("c-1", "n", type=int), int)
    assert_type(await client.get_values("c-1"), dict[str, Any])
    assert_type(await client.get_values("c-1", with_updated_at=True), dict[str, duro.KvValue])


def annotated(status: duro.OrchestrationStatus) -> Any:
    # A bare OrchestrationStatus is OrchestrationStatus[Any]: existing annotations still pass.
    assert_type(status.output, Any)
    return status.output


async def unions(ctx: duro.OrchestrationContext) -> None:
    # A union is not a class: checkers type the result loosely, so annotate the variable.
    maybe: int | None = await ctx.wait_for_event("maybe", type=int | None)
    stored: int | None = ctx.kv.get("maybe", type=int | None)
    del maybe, stored


async def replay_check(client: duro.Client) -> None:
    exported = await client.export_history("c-1")
    assert_type(exported, duro.history.HistoryFile)
    assert_type(duro.testing.replay(registry, exported), duro.testing.ReplayResult)
    assert_type(duro.testing.replay(registry, "histories/c-1.json"), duro.testing.ReplayResult)
    events = await client.get_history("c-1")
    assert_type(duro.testing.replay(registry, events, instance_id="c-1"), duro.testing.ReplayResult)
    assert_type(duro.testing.replay_all(registry, "histories"), list[duro.testing.ReplayResult])
