"""Fan-out/fan-in: run one activity per item in parallel, then combine the results.

``ctx.join`` waits for every future and returns the results in argument order, whatever order
they finished in; the activities run concurrently on the worker pool (and on several workers
when several run). Run it with ``python -m samples.fan_out_fan_in``.
"""

from __future__ import annotations

import anyio

import duro

registry = duro.Registry()

DOCUMENTS = {
    "a.txt": "the quick brown fox",
    "b.txt": "jumps over the lazy dog",
    "c.txt": "and the dog sleeps",
}


@registry.activity
async def list_documents(ctx: duro.ActivityContext, folder: str) -> list[str]:
    return sorted(DOCUMENTS)


@registry.activity
async def count_words(ctx: duro.ActivityContext, name: str) -> int:
    await anyio.sleep(0.05)  # pretend to download the file
    return len(DOCUMENTS[name].split())


@registry.orchestration
async def word_count(ctx: duro.OrchestrationContext, folder: str) -> dict[str, int]:
    names = await ctx.schedule_activity(list_documents, folder)
    counts = await ctx.join([ctx.schedule_activity(count_words, name) for name in names])
    return {**dict(zip(names, counts, strict=True)), "total": sum(counts)}


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("count-1", word_count, "docs/")
        status = await client.wait_for_orchestration(
            "count-1", timeout=10, output_type=dict[str, int]
        )
    print(f"count-1: {status.state.value} -> {status.output}")
    if status.output != {"a.txt": 4, "b.txt": 5, "c.txt": 4, "total": 13}:
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
