"""Worker specialisation with tags: some activities run only on workers that serve their tag.

``ctx.schedule_activity(render, scene, tag="gpu")`` routes the call to workers whose
``RuntimeOptions.tag_filter`` accepts ``"gpu"``; a worker's default filter runs untagged
activities only. Here two workers share one store: a general one (orchestrations and untagged
activities) and a GPU one (``orchestration_concurrency=0``: activities only, tagged ``gpu``).
In production they are separate processes on separate machines. Run it with
``python -m samples.tagged_workers``.
"""

from __future__ import annotations

import anyio

import duro
from duro import TagFilter

registry = duro.Registry()


@registry.activity
async def fetch_scene(ctx: duro.ActivityContext, name: str) -> str:
    return f"{name} scene on {ctx.worker_id}"


@registry.activity
async def render(ctx: duro.ActivityContext, scene: str) -> str:
    return f"rendered ({scene}) on {ctx.worker_id}"


@registry.orchestration
async def make_movie(ctx: duro.OrchestrationContext, name: str) -> list[str]:
    scene = await ctx.schedule_activity(fetch_scene, name)
    frame = await ctx.schedule_activity(render, scene, tag="gpu")
    return [scene, frame]


GENERAL = duro.RuntimeOptions(worker_id="general")
GPU = duro.RuntimeOptions(
    worker_id="gpu-box",
    orchestration_concurrency=0,  # this worker runs no orchestration turns
    tag_filter=TagFilter(tags=frozenset({"gpu"}), include_untagged=False),
)


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry, GENERAL), duro.Runtime(store, registry, GPU):
        client = duro.Client(store)
        await client.start_orchestration("movie-1", make_movie, "intro")
        status = await client.wait_for_orchestration("movie-1", timeout=10, output_type=list[str])
    for line in status.output:
        print(line)
    if status.output != ["intro scene on general", "rendered (intro scene on general) on gpu-box"]:
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
