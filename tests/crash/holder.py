"""A runtime that takes one activity and holds it until it is killed (the take-over test).

    HOLDER_MARKER=PATH python -m tests.crash.holder DB

Its locks last a minute, so only the take-over of a killed runtime (``_sqlite_liveness``)
moves its work sooner. The activity writes its attempt number to ``HOLDER_MARKER`` when it
starts (wherever it runs).
"""

from __future__ import annotations

import os
import sys

import anyio

import duro

LOCK_TIMEOUT = 60.0

registry = duro.Registry()


@registry.activity
async def held(ctx: duro.ActivityContext, _: None) -> str:
    await anyio.Path(os.environ["HOLDER_MARKER"]).write_text(str(ctx.attempt))
    if ctx.attempt == 1:
        await anyio.sleep_forever()  # until the process is killed
    return f"finished on attempt {ctx.attempt}"


@registry.orchestration
async def holds(ctx: duro.OrchestrationContext, _: None) -> str:
    result: str = await ctx.schedule_activity(held)
    return result


async def main(db: str) -> None:
    options = duro.RuntimeOptions(
        worker_id="holder",
        orchestration_lock_timeout=LOCK_TIMEOUT,
        activity_lock_timeout=LOCK_TIMEOUT,
    )
    async with duro.Runtime(duro.SqliteProvider(db), registry, options):
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
