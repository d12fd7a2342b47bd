"""The smallest duro program: one orchestration calling one activity.

Run it with ``python -m samples.hello``.
"""

from __future__ import annotations

import anyio

import duro

registry = duro.Registry()


@registry.activity  # name defaults to the function name; @registry.activity(name="Greet") overrides
async def greet(ctx: duro.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@registry.orchestration  # also: @registry.orchestration(name=..., version="2.0.0")
async def hello(ctx: duro.OrchestrationContext, name: str) -> str:
    return await ctx.schedule_activity(greet, name)  # by function or by registered name


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):  # starts dispatchers; exit = graceful shutdown
        client = duro.Client(store)
        await client.start_orchestration("inst-1", hello, "Python")  # by function or by name
        status = await client.wait_for_orchestration("inst-1", timeout=10)
    if status.state is not duro.State.COMPLETED or status.output != "Hello, Python!":
        raise SystemExit(f"unexpected result: {status}")
    print(f"{status.instance_id}: {status.state.value} -> {status.output!r}")


if __name__ == "__main__":
    anyio.run(main)
