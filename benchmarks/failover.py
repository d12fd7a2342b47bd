"""How long work waits when a Cosmos runtime dies or stops: fail-over, measured.

    python -m benchmarks.failover [--instances 10] [--partitions 1]

Two runtimes share one container through the Cosmos test layer: one in this process
(``runtime-0``), one a child process (``runtime-1``). Once they have split the slots:

* ``sigkill``: the child is killed with SIGKILL (its member document stays, it just stops
  changing) and instances whose slots it owned are started at once;
* ``exit``: a third runtime in this process joins, takes its share, and its ``Runtime`` stops
  while its provider stays open; instances of its former slots are started at once.

For each, the time from the kill (or the stop) until every instance completed: how long a due
message waits for a live runtime. Targets (issue 11): 5 s for both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio

import duro

from ._cosmos import CosmosCell, CosmosStack
from ._duro_workloads import registry

TARGET_S = 5.0


async def _members(store: Any) -> set[str]:
    rows = await store._ctx.store.query_partition(
        "~slots", "SELECT c.ownerId FROM c WHERE c.instanceId = @pk AND c.type = 'member'"
    )
    return {row["ownerId"] for row in rows}


async def _until(what: str, check: Any, timeout: float = 60.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 - the state is in the store: poll it
            await anyio.sleep(0.05)


def _ids_in(slots: frozenset[int], prefix: str, count: int) -> list[str]:
    from duro_cosmos._documents import slot_of

    ids: list[str] = []
    n = 0
    while len(ids) < count:
        candidate = f"{prefix}-{n}"
        if slot_of(candidate) in slots:
            ids.append(candidate)
        n += 1
    return ids


async def _served_after(client: duro.Client, ids: list[str], t0: float) -> list[float]:
    """Start ``ids`` and return, per instance, seconds from ``t0`` until it completed."""
    done: list[float] = []
    for i, instance_id in enumerate(ids):
        await client.start_orchestration(instance_id, "fan_out", [i, 1])

    async def wait(instance_id: str) -> None:
        await client.wait_for_orchestration(instance_id, timeout=120)
        done.append(time.monotonic() - t0)

    async with anyio.create_task_group() as tg:
        for instance_id in ids:
            tg.start_soon(wait, instance_id)
    return sorted(done)


async def measure(instances: int, partitions: int) -> dict[str, list[float]]:
    from duro_cosmos import CosmosProvider
    from duro_cosmos._membership import assign

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="duro-failover-") as tmp:
        async with CosmosStack(CosmosCell(partitions=partitions, runtimes=2), tmp) as stack:
            client = duro.Client(stack.client_store)
            options = duro.RuntimeOptions(worker_id="runtime-0", max_sessions=0)
            async with duro.Runtime(stack.store, registry, options):
                names = {"runtime-0", "runtime-1"}
                await _until("both runtimes joined", lambda: _eq(_members(stack.store), names))
                await anyio.sleep(3.0)  # past the hand-over grace: the split has settled
                assert stack.workers is not None
                doomed = stack.workers.processes[0]
                slots = assign(sorted(names), "runtime-1")
                ids = _ids_in(slots, "sigkill", instances)
                doomed.proc.kill()
                t0 = time.monotonic()
                results["sigkill"] = await _served_after(client, ids, t0)

                # A third runtime, in this process; its Runtime stops, its provider stays open.
                config = stack.store.config
                transport = stack.store._ctx.store._transport
                leaving = CosmosProvider(config, transport=transport, owner_id="runtime-2")
                async with leaving:
                    names = {"runtime-0", "runtime-2"}
                    exit_options = duro.RuntimeOptions(worker_id="runtime-2", max_sessions=0)
                    async with duro.Runtime(leaving, registry, exit_options):
                        await _until("runtime-2 joined", lambda: _eq(_members(leaving), names))
                        await anyio.sleep(3.0)
                    t0 = time.monotonic()
                    slots = assign(sorted(names), "runtime-2")
                    ids = _ids_in(slots, "exit", instances)
                    results["exit"] = await _served_after(client, ids, t0)
    return results


async def _eq(members: Any, names: set[str]) -> bool:
    return bool(await members == names)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover")
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args()
    results = anyio.run(measure, args.instances, args.partitions)
    for case, times in results.items():
        worst = max(times)
        verdict = "PASS" if worst <= TARGET_S else "FAIL"
        print(
            f"{case:8s} {len(times)} instances in the gone runtime's slots: served "
            f"p50 {statistics.median(times):.2f} s, max {worst:.2f} s after it went; "
            f"{verdict} (target {TARGET_S:.0f} s)"
        )


if __name__ == "__main__":
    main()
