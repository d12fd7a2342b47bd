"""A duro worker process on Azure Cosmos DB, configured from the environment.

Against a real account (or the official emulator)::

    export COSMOS_ENDPOINT=https://<account>.documents.azure.com:443/
    export COSMOS_KEY=<primary key>            # never logged
    export COSMOS_DATABASE=duro COSMOS_CONTAINER=duro
    python -m samples.cosmos_worker            # serves until Ctrl-C (SIGINT) or SIGTERM
    python -m samples.cosmos_worker --start 5  # also starts five orchestrations and waits

Without an account, ``--local-server`` starts the pinned local test server
(``@vercel/cosmosdb-server``, installed with ``npm ci --prefix tests/cosmos_server``; needs
Node.js) for the run and stops it afterwards::

    python -m samples.cosmos_worker --local-server --start 3

Run several of these processes against one container: they split the 256 dispatch slots
between them and take over the slots of one that dies.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import anyio

import duro
from duro_cosmos import CosmosConfig, CosmosProvider

registry = duro.Registry()

SERVER = Path(__file__).resolve().parent.parent / "tests" / "cosmos_server"
CLI = SERVER / "node_modules" / "@vercel" / "cosmosdb-server" / "lib" / "cli.js"


@registry.activity
async def greet(ctx: duro.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@registry.orchestration
async def hello(ctx: duro.OrchestrationContext, name: str) -> str:
    return await ctx.schedule_activity(greet, name)


@contextmanager
def local_server() -> Generator[str, None, None]:
    """Start the local test server on a free port; yields its URL, stops it on exit."""
    node = shutil.which("node")
    if node is None or not CLI.is_file():
        raise SystemExit(
            f"--local-server needs Node.js and the pinned server: npm ci --prefix {SERVER}"
        )
    # node directly, never npx: stopping an npx wrapper would leave the server running.
    process = subprocess.Popen(
        [node, str(CLI), "--host", "127.0.0.1", "-p", "0", "--no-ssl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = _ready_url(process)
        # Keep reading its output, so a full pipe can never block it.
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _ready_url(process: subprocess.Popen[str]) -> str:
    """Parse "Ready to accept HTTP connections at 127.0.0.1:PORT" from its first lines."""
    for line in process.stdout or ():
        ready = re.search(r"connections at (\S+):(\d+)", line)
        if ready:
            return f"http://{ready.group(1)}:{ready.group(2)}"
    raise SystemExit("the local Cosmos test server exited before it was ready")


def _drain(process: subprocess.Popen[str]) -> None:
    for _ in process.stdout or ():
        pass


async def serve(config: CosmosConfig, start: int, local: bool) -> None:
    print(f"worker on {config}")  # the key is masked in the config's repr
    # The local server wants a partition key on every batch operation (Cosmos does not).
    store = CosmosProvider(config, batch_partition_key=local)
    async with store, duro.Runtime(store, registry):
        client = duro.Client(store)
        if start:
            ids = [f"hello-{uuid.uuid4().hex[:8]}" for _ in range(start)]
            for instance_id in ids:
                await client.start_orchestration(instance_id, hello, instance_id)
            for instance_id in ids:
                status = await client.wait_for_orchestration(instance_id, timeout=60)
                print(f"{instance_id}: {status.state.value} -> {status.output!r}")
                if status.state is not duro.State.COMPLETED:
                    raise SystemExit(f"{instance_id} did not complete: {status.error}")
            return
        # Serve until asked to stop; leaving the block drains in-flight work gracefully.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--start", type=int, default=0, help="orchestrations to start and await")
    parser.add_argument(
        "--local-server",
        action="store_true",
        help="start the pinned local test server for this run instead of reading COSMOS_*",
    )
    args = parser.parse_args()
    if not args.local_server:
        anyio.run(serve, CosmosConfig.from_env(), args.start, False)
        return
    with local_server() as url:
        config = CosmosConfig.from_env(endpoint=url, database="samples", container="duro")
        anyio.run(serve, config, args.start, True)


if __name__ == "__main__":
    main()
