"""A store under a backlog: memory, and how late timers fire while it drains.

    python -m benchmarks.overload [--waiting 10000] [--starts 50000] [--probe-every 5] [--json PATH]

Issue 12's overload case, on one SQLite file and one runtime (defaults):

1. ``--waiting`` instances start and wait for an event that never comes (a store full of
   waiting work, as an approval backlog is);
2. 12 probe instances start, each with a durable timer, due every ``--probe-every`` seconds
   (by default 5 to 60 s later);
3. ``--starts`` instances are queued at once (a burst), each one turn that sets a 1 s timer,
   then one that completes; the runtime drains them.

Reported: peak RSS of the process (store, runtime and client in one process), RSS per
waiting instance, the drain rate, and the lateness of every timer (fired minus due, from the
histories): the probes and the burst's own. Lateness here is queueing: a timer that falls due
behind a burst waits its turn in due-time order.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import duro
from duro.history import TimerCreated, TimerFired

registry = duro.Registry()

PROBES = 12


@registry.orchestration
async def waiter(ctx: duro.OrchestrationContext, _: None) -> None:
    await ctx.wait_for_event("never")


@registry.orchestration
async def ticker(ctx: duro.OrchestrationContext, seconds: float) -> None:
    await ctx.schedule_timer(seconds)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _lateness_ms(client: duro.Client, instance_id: str) -> float:
    history = await client.get_history(instance_id)
    due = next(e.fire_at for e in history if isinstance(e, TimerCreated))
    fired = next(e.ts for e in history if isinstance(e, TimerFired))
    return float(fired - due)


async def _until(check: Any, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 - the state is in the store: poll it
            await anyio.sleep(0.5)


async def measure(waiting: int, starts: int, probe_every: float = 5.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="duro-overload-") as tmp:
        store = duro.SqliteProvider(Path(tmp) / "overload.db")
        client = duro.Client(store, registry=registry)
        rss_start = _rss_mb()
        async with store, duro.Runtime(store, registry):
            for n in range(waiting):
                await client.start_orchestration(f"wait-{n}", waiter)

            async def all_waiting() -> bool:
                depths = await client.queue_depths()
                return depths.orchestrator == 0 and depths.locked == 0

            await _until(all_waiting, 600)
            rss_waiting = _rss_mb()
            for n in range(PROBES):
                await client.start_orchestration(f"probe-{n}", ticker, probe_every * (n + 1))
            burst_at = time.monotonic()
            for n in range(starts):
                await client.start_orchestration(f"tick-{n}", ticker, 1.0)
            queued_in = time.monotonic() - burst_at

            async def drained() -> bool:
                status = await client.get_status(f"tick-{starts - 1}")
                depths = await client.queue_depths()
                return status.state is duro.State.COMPLETED and depths.orchestrator == 0

            await _until(drained, 3600)
            drain_s = time.monotonic() - burst_at
            for n in range(PROBES):
                await client.wait_for_orchestration(f"probe-{n}", timeout=600)
            probes = [await _lateness_ms(client, f"probe-{n}") for n in range(PROBES)]
            sample = range(0, starts, max(1, starts // 2000))
            ticks = sorted([await _lateness_ms(client, f"tick-{n}") for n in sample])
        return {
            "waiting": waiting,
            "starts": starts,
            "queued_in_s": round(queued_in, 1),
            "drain_s": round(drain_s, 1),
            "drain_per_s": round(starts / drain_s),
            "rss_start_mb": round(rss_start, 1),
            "rss_with_waiting_mb": round(rss_waiting, 1),
            "rss_peak_mb": round(_rss_mb(), 1),
            "bytes_per_waiting_instance": round((rss_waiting - rss_start) * 2**20 / waiting),
            "probe_lateness_s": [round(p / 1000, 2) for p in probes],
            "burst_timer_lateness_p50_s": round(statistics.median(ticks) / 1000, 2),
            "burst_timer_lateness_p99_s": round(ticks[int(len(ticks) * 0.99)] / 1000, 2),
            "burst_timer_lateness_max_s": round(ticks[-1] / 1000, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overload")
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=50_000)
    parser.add_argument(
        "--probe-every", type=float, default=5.0, help="seconds between the probes' timers"
    )
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args()
    result = anyio.run(measure, args.waiting, args.starts, args.probe_every)
    for key, value in result.items():
        print(f"{key:30s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
