"""Function chaining: each activity's result is the next activity's input.

The orchestration reads like ordinary sequential code; every ``await`` is a durable step, so
after a crash the chain resumes at the step it was on and finished steps are not run again.
The calls are typed: ``draft`` is a ``Draft`` because ``write_draft`` returns one, and a type
checker rejects passing it where a ``str`` is expected. Run it with
``python -m samples.chaining``.
"""

from __future__ import annotations

import anyio
import msgspec

import duro

registry = duro.Registry()


class Draft(msgspec.Struct):
    title: str
    body: str
    revision: int = 1


@registry.activity
async def write_draft(ctx: duro.ActivityContext, topic: str) -> Draft:
    return Draft(title=topic.title(), body=f"Some thoughts about {topic}.")


@registry.activity
async def proofread(ctx: duro.ActivityContext, draft: Draft) -> Draft:
    return Draft(draft.title, draft.body.replace("thoughts", "well-chosen thoughts"), 2)


@registry.activity
def publish(ctx: duro.ActivityContext, draft: Draft) -> str:  # plain def: runs in a thread
    slug = draft.title.lower().replace(" ", "-")
    return f"https://blog.example/{slug}?rev={draft.revision}"


@registry.orchestration
async def publish_article(ctx: duro.OrchestrationContext, topic: str) -> str:
    draft = await ctx.schedule_activity(write_draft, topic)
    checked = await ctx.schedule_activity(proofread, draft)
    return await ctx.schedule_activity(publish, checked)


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("article-1", publish_article, "durable execution")
        status = await client.wait_for_orchestration("article-1", timeout=10, output_type=str)
        history = await client.get_history("article-1")
    steps = [e.name for e in history if isinstance(e, duro.history.ActivityScheduled)]
    print(f"article-1: {status.state.value} -> {status.output}")
    print(f"  steps, in order: {' -> '.join(steps)}")
    if status.output != "https://blog.example/durable-execution?rev=2":
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
