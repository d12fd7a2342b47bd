"""One extra runtime process of a multi-process benchmark cell.

    python -m benchmarks._runtime_process --sqlite PATH --source runtime-1 --stats PATH
    python -m benchmarks._runtime_process --endpoint URL --key K --database D --container C \\
        --source runtime-1 --stats PATH [--role all|turns|activities]

Serves the benchmark's registry on a SQLite file or on ``CosmosProvider`` (through the
cell's compat proxy, tagging every request with ``--source`` for the proxy's RU meter).
``--role`` runs turns only or activities only (a role-split cell). Prints ``ready`` once
the runtime runs; on SIGTERM / SIGINT it stops gracefully (finishing in-flight work) and
writes ``{"turns_committed", "activities_completed", "cpu_s", "peak_rss_mb"}`` to
``--stats``, which the harness adds to its own runtime's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
from typing import Any

import anyio
import httpx

import duro

from ._duro_workloads import registry
from ._protocol import cpu_seconds, peak_rss_mb

ROLES: dict[str, dict[str, Any]] = {
    "all": {},
    "turns": {"activity_concurrency": 0},
    "activities": {"orchestration_concurrency": 0},
    "client": {"orchestration_concurrency": 0, "activity_concurrency": 0},
}
"""RuntimeOptions overrides per role."""


async def _store(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> Any:
    if args.sqlite:
        return duro.SqliteProvider(args.sqlite)
    from duro_cosmos import CosmosConfig, CosmosProvider

    from ._cosmos import TaggingTransport

    http = await stack.enter_async_context(httpx.AsyncHTTPTransport())
    config = CosmosConfig(args.endpoint, args.key, args.database, args.container)
    return CosmosProvider(
        config, transport=TaggingTransport(http, args.source), owner_id=args.source
    )


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    options = duro.RuntimeOptions(**ROLES[args.role])
    async with contextlib.AsyncExitStack() as stack:
        provider = await _store(args, stack)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with provider, duro.Runtime(provider, registry, options) as rt:
                print("ready", flush=True)
                async for _ in signals:
                    break
    return {
        "turns_committed": rt.turns_committed,
        "activities_completed": rt.activities_completed,
        "cpu_s": cpu_seconds(),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._runtime_process")
    parser.add_argument("--sqlite", help="SQLite file (else the Cosmos flags)")
    parser.add_argument("--endpoint")
    parser.add_argument("--key")
    parser.add_argument("--database")
    parser.add_argument("--container")
    parser.add_argument("--role", choices=sorted(ROLES), default="all")
    parser.add_argument("--source", required=True, help="name in logs and the Cosmos meter")
    parser.add_argument("--stats", required=True, help="JSON file written at exit")
    args = parser.parse_args()
    stats = anyio.run(serve, args)
    with open(args.stats, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
