"""Durable key-value state: an orchestration keeps a map that clients can read at any time.

``ctx.kv`` is a small map per instance (up to 100 keys): writes are recorded in history and
committed with the turn, reads are local, and it survives restarts and ``continue_as_new``.
Clients read it with ``Client.get_value`` (typed with ``type=``) and ``get_values`` without
waiting for the orchestration to finish. Here a shopping cart takes ``add``/``remove``
messages from a mailbox until ``checkout``. Run it with ``python -m samples.durable_kv``.
"""

from __future__ import annotations

import anyio
import msgspec

import duro

registry = duro.Registry()


class CartChange(msgspec.Struct):
    action: str  # "add", "remove" or "checkout"
    sku: str = ""
    quantity: int = 0


@registry.orchestration
async def cart(ctx: duro.OrchestrationContext, customer: str) -> dict[str, int]:
    while True:
        change = await ctx.dequeue_event("changes", type=CartChange)
        if change.action == "checkout":
            return {sku: ctx.kv.get(sku, 0, type=int) for sku in ctx.kv}
        count = ctx.kv.get(change.sku, 0, type=int)
        count += change.quantity if change.action == "add" else -change.quantity
        if count > 0:
            ctx.kv.set(change.sku, count)
        else:
            ctx.kv.delete(change.sku)
        ctx.set_custom_status({"items": sum(ctx.kv.get(k, 0, type=int) for k in ctx.kv)})


async def main() -> None:
    store = duro.SqliteProvider.in_memory()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("cart-ada", cart, "ada")
        for change in (CartChange("add", "tea", 2), CartChange("add", "mug", 1)):
            await client.enqueue_event("cart-ada", "changes", change)
        status = await client.get_status("cart-ada")
        while status.custom_status != {"items": 3}:
            status = await client.wait_for_status_change("cart-ada", status, timeout=10)
        tea = await client.get_value("cart-ada", "tea", 0, type=int)  # an int, while running
        print(f"while shopping: tea={tea}, all={await client.get_values('cart-ada')}")

        await client.enqueue_event("cart-ada", "changes", CartChange("remove", "tea", 2))
        await client.enqueue_event("cart-ada", "changes", CartChange("checkout"))
        status = await client.wait_for_orchestration(
            "cart-ada", timeout=10, output_type=dict[str, int]
        )
        left = await client.get_values("cart-ada")
    print(f"checked out: {status.output}; the map after the end: {left}")
    if tea != 2 or status.output != {"mug": 1} or left != {"mug": 1}:
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
