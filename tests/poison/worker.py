"""A worker process whose one activity kills the process that runs it, every time.

    python -m tests.poison.worker --db PATH

Runs a ``duro.Runtime`` on the SQLite file (stable worker id, ``max_deliveries`` 3) until it
dies or is stopped with SIGTERM. ``crash`` SIGKILLs its own process; ``ok`` returns.
"""

from __future__ import annotations

import argparse
import os
import signal

import anyio

import duro

MAX_DELIVERIES = 3

registry = duro.Registry()


@registry.activity
async def crash(ctx: duro.ActivityContext, _: None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # a segfault, an OOM kill: the handler dies


@registry.activity
async def ok(ctx: duro.ActivityContext, n: int) -> int:
    await anyio.sleep(0.05)
    return n


@registry.orchestration
async def doomed(ctx: duro.OrchestrationContext, _: None) -> None:
    await ctx.schedule_activity(crash)


@registry.orchestration
async def healthy(ctx: duro.OrchestrationContext, n: int) -> int:
    total = 0
    for i in range(3):
        total += await ctx.schedule_activity(ok, n + i)
    return total


async def serve(db: str) -> None:
    options = duro.RuntimeOptions(
        worker_id="poison-worker",  # stable: a restart takes the dead run's locks back at once
        max_deliveries=MAX_DELIVERIES,
        max_sessions=0,
        poll_timeout=0.1,
    )
    store = duro.SqliteProvider(db)
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with store, duro.Runtime(store, registry, options):
            async for _ in signals:
                break


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.poison.worker")
    parser.add_argument("--db", required=True)
    anyio.run(serve, parser.parse_args().db)


if __name__ == "__main__":
    main()
