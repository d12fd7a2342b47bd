"""A duro worker process on Azure Cosmos DB, configured from the environment.

Against the local test server (see ``tests/cosmos/README.md``) or a real account::

    export COSMOS_ENDPOINT=https://<account>.documents.azure.com:443/
    export COSMOS_KEY=<primary key>            # never logged
    export COSMOS_DATABASE=duro COSMOS_CONTAINER=duro
    python -m samples.cosmos_worker            # serves until Ctrl-C
    python -m samples.cosmos_worker --start 5  # also starts five orchestrations and waits
    python -m samples.cosmos_worker --local-server --start 3  # against the local test server

Run several of these processes against one container: they split the 256 dispatch slots
between them and take over the slots of one that dies.
"""

from __future__ import annotations

import argparse
import signal
import uuid

import anyio

import duro
from duro_cosmos import CosmosConfig, CosmosProvider

registry = duro.Registry()


@registry.activity
async def greet(ctx: duro.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@registry.orchestration
async def hello(ctx: duro.OrchestrationContext, name: str) -> str:
    greeting: str = await ctx.schedule_activity(greet, name)
    return greeting


async def main(start: int, local_server: bool) -> None:
    config = CosmosConfig.from_env()
    print(f"worker on {config}")  # the key is masked in the config's repr
    store = CosmosProvider(config, batch_partition_key=local_server)
    async with store, duro.Runtime(store, registry):
        client = duro.Client(store)
        if start:
            ids = [f"hello-{uuid.uuid4().hex[:8]}" for _ in range(start)]
            for instance_id in ids:
                await client.start_orchestration(instance_id, hello, instance_id)
            for instance_id in ids:
                status = await client.wait_for_orchestration(instance_id, timeout=60)
                print(f"{instance_id}: {status.state.value} -> {status.output!r}")
            return
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=0, help="orchestrations to start and await")
    parser.add_argument(
        "--local-server",
        action="store_true",
        help="talking to @vercel/cosmosdb-server directly (its batches need per-op keys)",
    )
    args = parser.parse_args()
    anyio.run(main, args.start, args.local_server)
