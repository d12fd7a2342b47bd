"""Session affinity: every activity of one session runs on the worker that owns the session.

Useful when activities share something local to a worker: a warm cache, a loaded model, an
open connection. ``ctx.schedule_activity(..., session="user-1")`` sends the call to the
worker that owns session ``user-1`` (the first to fetch one of its items claims it and keeps
renewing it while it is in use); other sessions may go to other workers. Here two workers
share a store and each keeps a per-worker cache. Run it with ``python -m samples.sessions``.
"""

from __future__ import annotations

import anyio
import msgspec

import duro

registry = duro.Registry()
caches: dict[str, dict[str, list[str]]] = {}
"""worker id -> session -> what this worker has cached for it."""


class Step(msgspec.Struct):
    user: str
    page: str


@registry.activity
async def visit(ctx: duro.ActivityContext, step: Step) -> str:
    cache = caches.setdefault(ctx.worker_id, {}).setdefault(step.user, [])
    cache.append(step.page)
    cached = len(cache)
    await anyio.sleep(0.01)
    return f"{step.user} {step.page} on {ctx.worker_id} (pages cached here: {cached})"


@registry.orchestration
async def browse(ctx: duro.OrchestrationContext, users: list[str]) -> list[str]:
    calls = [
        ctx.schedule_activity(visit, Step(user, page), session=user)
        for page in ("home", "search", "cart")
        for user in users
    ]
    return await ctx.join(calls)


async def main() -> None:
    store = duro.InMemoryProvider()
    workers = [duro.RuntimeOptions(worker_id=name) for name in ("worker-a", "worker-b")]
    async with duro.Runtime(store, registry, workers[0]), duro.Runtime(store, registry, workers[1]):
        client = duro.Client(store)
        await client.start_orchestration("browse-1", browse, ["ada", "bob", "cy"])
        status = await client.wait_for_orchestration("browse-1", timeout=10, output_type=list[str])
    for line in status.output:
        print(line)
    for user in ("ada", "bob", "cy"):
        owners = {worker for worker, sessions in caches.items() if user in sessions}
        print(f"session {user}: all on {owners}")
        if len(owners) != 1:
            raise SystemExit(f"session {user} ran on several workers: {owners}")


if __name__ == "__main__":
    anyio.run(main)
