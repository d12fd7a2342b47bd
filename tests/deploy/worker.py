"""A worker process of the rolling-deploy test, running the old or the new code.

    python -m tests.deploy.worker --db PATH --code old|new

Both codes register ``greet`` 1.0.0; the new one adds ``greet`` 2.0.0, the orchestration
``onboard`` and its activity ``send_welcome``. Runs a ``duro.Runtime`` on the SQLite file until
SIGTERM, then shuts down gracefully.
"""

from __future__ import annotations

import argparse
import signal

import anyio

import duro


def registry_for(code: str) -> duro.Registry:
    registry = duro.Registry()

    @registry.orchestration(name="greet", version="1.0.0")
    async def greet_v1(ctx: duro.OrchestrationContext, name: str) -> str:
        return f"hello {name} (1.0.0)"

    if code == "new":

        @registry.orchestration(name="greet", version="2.0.0")
        async def greet_v2(ctx: duro.OrchestrationContext, name: str) -> str:
            return f"hello {name} (2.0.0)"

        @registry.activity
        async def send_welcome(ctx: duro.ActivityContext, name: str) -> str:
            return f"welcome mail for {name}"

        @registry.orchestration
        async def onboard(ctx: duro.OrchestrationContext, name: str) -> str:
            mail: str = await ctx.schedule_activity(send_welcome, name)
            return mail

    return registry


async def serve(db: str, code: str) -> None:
    options = duro.RuntimeOptions(worker_id=f"worker-{code}", max_sessions=0, poll_timeout=0.1)
    store = duro.SqliteProvider(db)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with store, duro.Runtime(store, registry_for(code), options):
            print("ready", flush=True)
            async for _ in signals:
                break


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.worker")
    parser.add_argument("--db", required=True)
    parser.add_argument("--code", choices=("old", "new"), required=True)
    args = parser.parse_args()
    anyio.run(serve, args.db, args.code)


if __name__ == "__main__":
    main()
