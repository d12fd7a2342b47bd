"""One extra runtime process of a multi-runtime Cosmos benchmark cell (``cosmos-r2`` ...).

    python -m benchmarks._cosmos_runtime --endpoint URL --database D --container C \\
        --source runtime-1 --stats PATH

Serves the benchmark's registry on ``CosmosProvider`` through the cell's compat proxy, tagging
every request with ``--source`` for the proxy's RU meter. Prints ``ready`` once the runtime
runs; on SIGTERM / SIGINT it stops gracefully (finishing in-flight work, giving up its slot
lease) and writes ``{"turns_committed", "activities_completed"}`` to ``--stats``, which the
harness adds to its own runtime's counts.
"""

from __future__ import annotations

import argparse
import json
import signal

import anyio
import httpx

import duro
from duro_cosmos import CosmosConfig, CosmosProvider

from ._cosmos import TaggingTransport
from ._duro_workloads import registry


async def serve(args: argparse.Namespace) -> dict[str, int]:
    config = CosmosConfig(args.endpoint, args.key, args.database, args.container)
    async with httpx.AsyncHTTPTransport() as http:
        provider = CosmosProvider(
            config, transport=TaggingTransport(http, args.source), owner_id=args.source
        )
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with provider, duro.Runtime(provider, registry) as rt:
                print("ready", flush=True)
                async for _ in signals:
                    break
            return {
                "turns_committed": rt.turns_committed,
                "activities_completed": rt.activities_completed,
            }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._cosmos_runtime")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--source", required=True, help="meter source tag, e.g. runtime-1")
    parser.add_argument("--stats", required=True, help="JSON file written at exit")
    args = parser.parse_args()
    stats = anyio.run(serve, args)
    with open(args.stats, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
