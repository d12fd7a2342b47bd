"""An eternal orchestration: a mailbox consumer that keeps its history short.

``ctx.dequeue_event`` reads a FIFO mailbox fed by ``Client.enqueue_event``. Every few
messages the orchestration calls ``ctx.continue_as_new``: the execution ends, a fresh one
starts with an empty history, and messages not yet consumed are carried over in order. The
running total lives in the durable KV map, which also survives ``continue_as_new``.

Run it with ``python -m samples.mailbox_counter``.
"""

from __future__ import annotations

import anyio

import duro

registry = duro.Registry()

BATCH = 3


@registry.orchestration
async def counter(ctx: duro.OrchestrationContext, generation: int) -> int:
    for _ in range(BATCH):
        message = await ctx.dequeue_event("deposits", type=dict[str, int])
        if message.get("stop"):
            return ctx.kv.get("total", 0, type=int)
        ctx.kv.set("total", ctx.kv.get("total", 0, type=int) + message["amount"])
        ctx.set_custom_status({"generation": generation, "total": ctx.kv.get("total")})
    ctx.continue_as_new(generation + 1)  # no code after this line runs


async def main() -> None:
    store = duro.SqliteProvider.in_memory()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("account-1", counter, 1)
        # Enqueued all at once: they are consumed strictly in order, across executions.
        for amount in (10, 20, 30, 40, 50, 60, 70):
            await client.enqueue_event("account-1", "deposits", {"amount": amount})
        await client.enqueue_event("account-1", "deposits", {"stop": 1})

        status = await client.wait_for_orchestration("account-1", timeout=10)
        print(f"account-1: {status.state.value}, total {status.output}")
        print(
            f"  execution {status.execution_id} is current; KV total = "
            f"{await client.get_value('account-1', 'total')}"
        )
        history = await client.get_history("account-1")
        print(f"  the current execution's history has {len(history)} events")
    if status.output != 280 or status.execution_id != 3:
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
