"""What an idle SQLite runtime costs, and how soon it notices work another process writes.

    python -m benchmarks.idle                      # 15 s idle, then 40 starts
    python -m benchmarks.idle --seconds 5 --starts 10

A runtime runs in its own process (``benchmarks._runtime_process``) on a fresh SQLite file.
First nothing happens for ``--seconds``: its CPU over that window (from ``/proc``, after a
settling pause) is the idle cost, in percent of one core. Then this process, as a client,
starts no-op orchestrations at random moments 0.3-0.6 s apart and times each from the start
call to its durable completion: with the runtime idle, that is how long a workflow started by
another process (a web service beside its workers) waits to be picked up. Each start's
``wait_for_orchestration`` is timed too, from the durable completion to its return: how late a
client in another process learns that an instance ended. Last, ``--back-to-back`` starts, each
right after the previous wait returned, are timed from the start call to the wait's return
(what a caller that runs a workflow and waits for its result sees). ``--runtime-here`` runs a
second runtime in this process for the starts and waits: a web service with an embedded
runtime beside a worker process (its own starts go to the other runtime first). Run two
trees alternately to compare them: the machine is noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import time

import anyio

import duro

from ._duro_workloads import chain, registry
from ._processes import RuntimeProcesses

SETTLE_S = 3.0
"""Start-up work (schema, first polls) to leave out of the idle window."""


def _cpu_seconds_of(pid: int) -> float:
    """User plus system CPU time of another process (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(seconds: float, starts: int, back_to_back: int, runtime_here: bool) -> None:
    with tempfile.TemporaryDirectory() as db_dir:
        path = os.path.join(db_dir, "duro.db")
        store = duro.SqliteProvider(path)
        processes = RuntimeProcesses(db_dir)
        async with store:  # the schema exists before the runtime process opens the file
            processes.spawn("runtime-1", ["--sqlite", path])
            try:
                await processes.wait_ready()
                await anyio.sleep(SETTLE_S)
                pid = processes.processes[0].proc.pid
                cpu, began = _cpu_seconds_of(pid), time.monotonic()
                await anyio.sleep(seconds)
                idle = (_cpu_seconds_of(pid) - cpu) / (time.monotonic() - began)
                client = duro.Client(store, registry=registry)
                async with contextlib.AsyncExitStack() as here:
                    if runtime_here:
                        await here.enter_async_context(duro.Runtime(store, registry))
                    timed = [await _pick_up(client, f"idle-{i}") for i in range(starts)]
                    rounds = sorted(
                        [await _round_trip(client, f"b2b-{i}") for i in range(back_to_back)]
                    )
            finally:
                await processes.stop()
    waits = sorted(pick_up for pick_up, _ in timed)
    lags = sorted(lag for _, lag in timed)
    print(f"idle runtime: {idle * 100:.2f} % of a core over {seconds:.0f} s")
    print(
        f"pick-up of a start from another process, {starts} starts: mean "
        f"{statistics.mean(waits):.1f} ms, median {statistics.median(waits):.1f} ms, p90 "
        f"{waits[int(len(waits) * 0.9)]:.1f} ms, max {waits[-1]:.1f} ms"
    )
    print(
        f"wait_for_orchestration returned after the completion, {starts} waits: mean "
        f"{statistics.mean(lags):.1f} ms, median {statistics.median(lags):.1f} ms, p90 "
        f"{lags[int(len(lags) * 0.9)]:.1f} ms, max {lags[-1]:.1f} ms"
    )
    if rounds:
        print(
            f"start and wait back to back, {back_to_back} workflows: median "
            f"{statistics.median(rounds):.2f} ms, p99 {rounds[int(len(rounds) * 0.99)]:.2f} ms, "
            f"max {rounds[-1]:.2f} ms"
        )


async def _pick_up(client: duro.Client, instance_id: str) -> tuple[float, float]:
    """Milliseconds from a start call (at a random moment) to the durable completion, and from
    there to the return of the client's wait."""
    await anyio.sleep(random.uniform(0.3, 0.6))
    began = time.time()
    await client.start_orchestration(instance_id, chain, [1, 0])
    status = await client.wait_for_orchestration(instance_id, timeout=30)
    returned = time.time()
    if status.state is not duro.State.COMPLETED or status.updated_at is None:
        raise RuntimeError(f"{instance_id}: {status.state.value} ({status.error})")
    completed = status.updated_at.timestamp()
    return (completed - began) * 1000, (returned - completed) * 1000


async def _round_trip(client: duro.Client, instance_id: str) -> float:
    """Milliseconds from a start call to the return of the wait for its result."""
    began = time.perf_counter()
    await client.start_orchestration(instance_id, chain, [1, 0])
    status = await client.wait_for_orchestration(instance_id, timeout=30)
    if status.state is not duro.State.COMPLETED:
        raise RuntimeError(f"{instance_id}: {status.state.value} ({status.error})")
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="idle window")
    parser.add_argument("--starts", type=int, default=40, help="pick-up samples")
    parser.add_argument(
        "--back-to-back", type=int, default=200, help="starts each waited for before the next"
    )
    parser.add_argument(
        "--runtime-here", action="store_true", help="also run a runtime in the starting process"
    )
    args = parser.parse_args()
    anyio.run(measure, args.seconds, args.starts, args.back_to_back, args.runtime_here)


if __name__ == "__main__":
    main()
