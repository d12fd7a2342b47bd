"""One worker process of the soak test: a ``duro.Runtime`` running the mixed workload.

    python -m tests.reliability.soak_worker --slot w0 --events PATH --store sqlite --db PATH
    python -m tests.reliability.soak_worker --slot w0 --events PATH --store cosmos \\
        --endpoint URL --database D --container C [--reconcile-ms MS]

It serves the store until SIGTERM / SIGINT (graceful: in-flight work finishes) or SIGKILL
(nothing is given up: the restarted process, or the others, must take the work over). The
driver (:mod:`tests.reliability.soak`) starts and kills it.

``--worker-id`` gives the runtime (and on Cosmos the provider's membership) a stable identity,
so a process restarted under it takes its predecessor's locks back; without it both are the
defaults, unique per process. The workload's logs and activity pause come from the
environment (see :mod:`tests.reliability.workload`). ``--events`` gets one JSON line when the
runtime has started (``ready``), one with the process's resident set size every
:data:`RSS_EVERY_S` (``rss``, ``rss_kb``), and one when it stopped gracefully (``stopped``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import anyio

import duro
from duro.providers import Provider

from . import workload

RSS_EVERY_S = 2.0
"""How often the process reports its resident set size."""


def _event(path: str, event: str, slot: str, worker_id: str, **more: int) -> None:
    line: dict[str, object] = {"event": event, "slot": slot, "pid": os.getpid()}
    line.update(worker_id=worker_id, at_ns=time.time_ns(), **more)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def rss_kb() -> int:
    """This process's resident set size now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


async def report_rss(path: str, slot: str, worker_id: str) -> None:
    while True:
        _event(path, "rss", slot, worker_id, rss_kb=rss_kb())
        await anyio.sleep(RSS_EVERY_S)


def make_store(args: argparse.Namespace) -> Provider:
    if args.store == "sqlite":
        return duro.SqliteProvider(args.db)
    from duro_cosmos import CosmosConfig, CosmosProvider

    config = CosmosConfig(args.endpoint, args.key, args.database, args.container)
    return CosmosProvider(config, owner_id=args.worker_id)


def options(worker_id: str | None, cache_size: int | None = None) -> duro.RuntimeOptions:
    """The defaults, except the identity and the execution cache's size when given."""
    given: dict[str, Any] = {}
    if worker_id is not None:
        given["worker_id"] = worker_id
    if cache_size is not None:
        given["execution_cache_size"] = cache_size
    return duro.RuntimeOptions(**given)


async def run(args: argparse.Namespace) -> None:
    store = make_store(args)
    runtime_options = options(args.worker_id, args.execution_cache_size)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with store, duro.Runtime(store, workload.registry, runtime_options):
            _event(args.events, "ready", args.slot, runtime_options.worker_id)
            async with anyio.create_task_group() as tg:
                tg.start_soon(report_rss, args.events, args.slot, runtime_options.worker_id)
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()
    _event(args.events, "stopped", args.slot, runtime_options.worker_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.soak_worker", description=__doc__
    )
    parser.add_argument("--slot", required=True, help="the driver's name for this worker")
    parser.add_argument("--events", required=True, help="ready/stopped lines (appended)")
    parser.add_argument("--worker-id", help="a stable identity (default: unique per process)")
    parser.add_argument("--execution-cache-size", type=int, help="default: the runtime's")
    parser.add_argument("--store", choices=("sqlite", "cosmos"), required=True)
    parser.add_argument("--db", help="the SQLite file")
    parser.add_argument("--endpoint", help="the Cosmos endpoint (the driver's compat proxy)")
    parser.add_argument("--key", default=None)
    parser.add_argument("--database")
    parser.add_argument("--container")
    parser.add_argument(
        "--reconcile-ms",
        type=int,
        help="Cosmos outbox reconciler interval and grace (default: the provider's)",
    )
    args = parser.parse_args(argv)
    if args.store == "sqlite" and not args.db:
        parser.error("--store sqlite needs --db")
    if args.store == "cosmos":
        if not (args.endpoint and args.database and args.container):
            parser.error("--store cosmos needs --endpoint, --database and --container")
        if args.key is None:
            from tests.cosmos.compat import EMULATOR_KEY

            args.key = EMULATOR_KEY
        if args.reconcile_ms is not None:
            import duro_cosmos._outbox as outbox

            outbox.RECONCILE_INTERVAL_MS = args.reconcile_ms
            outbox.RECONCILE_GRACE_MS = args.reconcile_ms
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {args.slot} pid {os.getpid()} %(name)s %(levelname)s %(message)s",
    )
    anyio.run(run, args)


if __name__ == "__main__":
    main()
