"""duro's side of the benchmark: W1-W6 (and IDLE) on one provider, one run per process.

    python -m benchmarks._duro_workloads --workload W1 --config sqlite --db-dir /tmp/x

``--config`` names a provider in ``PROVIDERS``, a multi-process SQLite cell in
``SQLITE_PROCESSES`` (``sqlite-x2``: two full runtime processes on one file, the documented
way to use every core of a host, the harness's also starting the workflows; ``sqlite-w2``: the
same two runtimes in their own processes, the harness only starting and waiting, as a web
service beside its workers would; ``sqlite-split``: one process runs turns, another
activities), or a Cosmos cell (``cosmos``, ``cosmos-p30-r2``: simulated physical partitions
and runtime processes, see :mod:`benchmarks._cosmos`). Cosmos runs also report the HTTP
requests and the estimated request units (RU) the runtimes spent, per orchestration,
activity, turn and request kind, and while idle. ``IDLE`` is a Cosmos-only measurement:
runtimes with no work, for ``--n`` seconds.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import duro

from ._cosmos import CosmosCell, CosmosStack, busy_figures, idle_figures
from ._processes import RuntimeProcesses
from ._protocol import (
    TIMER_SECONDS,
    NotApplicable,
    RunResult,
    cpu_seconds,
    current_rss_bytes,
    fill_latency,
    fill_throughput,
    now_ms,
    run_main,
    w4_turn_costs,
)

# -- stores -----------------------------------------------------------------------------------


def _memory(db_dir: str) -> Any:
    return duro.InMemoryProvider()


def _sqlite(db_dir: str) -> Any:
    return duro.SqliteProvider(os.path.join(db_dir, "duro.db"))


PROVIDERS: dict[str, Callable[[str], Any]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}
"""Stores without a network stack; Cosmos configs go through :class:`CosmosStack`."""

SQLITE_PROCESSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sqlite-x2": ("all", ("all",)),
    "sqlite-split": ("turns", ("activities",)),
    "sqlite-w2": ("client", ("all", "all")),
}
"""Multi-process SQLite cells: (the harness runtime's role, the extra processes' roles);
roles as in ``benchmarks._runtime_process.ROLES``."""
MULTI_PROCESS_WORKLOADS = ("W1", "W2", "W6")
"""Throughput workloads; the others measure one process (W3-W5) and stay single."""

# -- orchestrations and activities ------------------------------------------------------------

registry = duro.Registry()
_step_times: list[float] = []


@registry.activity
async def echo(ctx: duro.ActivityContext, x: int) -> int:
    return x


@registry.activity
async def inc(ctx: duro.ActivityContext, x: int) -> int:
    return x + 1


@registry.activity
async def step(ctx: duro.ActivityContext, i: int) -> int:
    _step_times.append(time.perf_counter())
    return i


@registry.orchestration
async def fan_out(ctx: duro.OrchestrationContext, inp: list[int]) -> list[int]:
    seed, k = inp
    return await ctx.join([ctx.schedule_activity(echo, seed * 100 + i) for i in range(k)])


@registry.orchestration
async def chain(ctx: duro.OrchestrationContext, inp: list[int]) -> int:
    acc, k = inp
    for _ in range(k):
        acc = await ctx.schedule_activity(inc, acc)
    return acc


@registry.orchestration
async def timer(ctx: duro.OrchestrationContext, seq: int) -> int:
    await ctx.schedule_timer(TIMER_SECONDS)
    return seq


@registry.orchestration
async def long_history(ctx: duro.OrchestrationContext, k: int) -> int:
    for i in range(k):
        if await ctx.schedule_activity(step, i) != i:
            raise ValueError(f"step {i} returned a wrong value")
    return k


@registry.orchestration
async def waiter(ctx: duro.OrchestrationContext, i: int) -> int:
    return int(await ctx.wait_for_event("go", type=int)) + i


def expected_output(orch: Any, seed: int, k: int) -> Any:
    """What ``fan_out`` (W1) or ``chain`` (W2) started with ``[seed, k]`` must return."""
    return [seed * 100 + i for i in range(k)] if orch is fan_out else seed + k


# -- harness ----------------------------------------------------------------------------------

IDLE_SECONDS = 3.0
"""Cosmos: how long the runtimes sit idle after the workload while requests are counted."""
IDLE_WARMUP_SECONDS = 3.0
"""IDLE: start-up traffic (bootstrap, slot leases, the runtimes finding each other) to skip."""

Workload = Callable[[duro.Runtime, duro.Client, argparse.Namespace, RunResult], Awaitable[None]]


def _is_store_error(status: duro.OrchestrationStatus) -> bool:
    err = status.error
    return err is not None and err.category is duro.ErrorCategory.INFRASTRUCTURE


async def _collect(
    client: duro.Client,
    expected: dict[str, Any],
    deadline: float,
    result: RunResult,
) -> dict[str, float]:
    """Wait for every instance, check its output; returns durable completion times (wall ms)."""
    done: dict[str, float] = {}
    for instance_id, want in expected.items():
        try:
            status = await client.wait_for_orchestration(
                instance_id, timeout=max(0.1, deadline - time.monotonic())
            )
        except duro.WaitTimeoutError:
            result.fail(f"{instance_id}: timed out")
            continue
        result.checked += 1
        if status.state is not duro.State.COMPLETED:
            result.fail(
                f"{instance_id}: {status.state.value}: {status.error}",
                store=_is_store_error(status),
            )
        elif status.output != want:
            result.fail(f"{instance_id}: output {status.output!r}, expected {want!r}")
        else:
            done[instance_id] = (
                status.updated_at.timestamp() * 1000.0 if status.updated_at else now_ms()
            )
    return done


async def _batch(
    client: duro.Client, args: argparse.Namespace, result: RunResult, orch: Any, per_orch: int
) -> None:
    """W1/W2: start n back-to-back from one client, then wait for all durable completions."""
    expected: dict[str, Any] = {}
    started: dict[str, float] = {}
    first = now_ms()
    for seed in range(args.n):
        instance_id = f"{args.workload.lower()}-{seed}"
        started[instance_id] = now_ms()
        await client.start_orchestration(instance_id, orch, [seed, args.k])
        expected[instance_id] = expected_output(orch, seed, args.k)
    result.extra["start_s"] = (now_ms() - first) / 1000.0
    done = await _collect(client, expected, time.monotonic() + args.timeout, result)
    if done:
        fill_throughput(
            result, (max(done.values()) - first) / 1000.0, len(done), len(done) * per_orch
        )
        fill_latency(result, [done[i] - started[i] for i in done])


async def w1(rt: duro.Runtime, client: duro.Client, args: argparse.Namespace, r: RunResult) -> None:
    await _batch(client, args, r, fan_out, args.k)


async def w2(rt: duro.Runtime, client: duro.Client, args: argparse.Namespace, r: RunResult) -> None:
    await _batch(client, args, r, chain, args.k)


async def w3(rt: duro.Runtime, client: duro.Client, args: argparse.Namespace, r: RunResult) -> None:
    latencies: list[float] = []
    first = now_ms()
    last = first
    for seq in range(args.n):
        instance_id = f"w3-{seq}"
        begin = now_ms()
        await client.start_orchestration(instance_id, timer, seq)
        done = await _collect(client, {instance_id: seq}, time.monotonic() + args.timeout, r)
        if instance_id in done:
            latencies.append(done[instance_id] - begin)
            last = done[instance_id]
    fill_throughput(r, (last - first) / 1000.0, len(latencies), 0)
    fill_latency(r, latencies)


async def w4(rt: duro.Runtime, client: duro.Client, args: argparse.Namespace, r: RunResult) -> None:
    _step_times.clear()
    first = now_ms()
    await client.start_orchestration("w4", long_history, args.k)
    done = await _collect(client, {"w4": args.k}, time.monotonic() + args.timeout, r)
    if "w4" in done:
        fill_throughput(r, (done["w4"] - first) / 1000.0, 1, args.k)
        fill_latency(r, [done["w4"] - first])
    r.extra.update(w4_turn_costs(_step_times, args.k))


async def w5(rt: duro.Runtime, client: duro.Client, args: argparse.Namespace, r: RunResult) -> None:
    gc.collect()
    rss_base = current_rss_bytes()
    t0 = time.monotonic()
    ids = [f"w5-{i}" for i in range(args.n)]
    for i, instance_id in enumerate(ids):
        await client.start_orchestration(instance_id, waiter, i)
    # Every instance has run its first turn (and is waiting) once n turns are committed.
    deadline = t0 + args.timeout
    while rt.turns_committed < args.n and time.monotonic() < deadline:  # noqa: ASYNC110 (polling a counter)
        await anyio.sleep(0.05)
    if rt.turns_committed < args.n:
        raise TimeoutError(f"only {rt.turns_committed} of {args.n} instances reached their wait")
    r.extra["start_and_wait_s"] = time.monotonic() - t0
    gc.collect()
    rss_waiting = current_rss_bytes()
    r.extra["rss_baseline_mb"] = rss_base / 2**20
    r.extra["rss_waiting_mb"] = rss_waiting / 2**20
    r.extra["bytes_per_waiting_instance"] = (rss_waiting - rss_base) / args.n
    raised: dict[str, float] = {}
    first = now_ms()
    for i, instance_id in enumerate(ids):
        raised[instance_id] = now_ms()
        await client.raise_event(instance_id, "go", 2 * i)
    done = await _collect(
        client, {x: 3 * i for i, x in enumerate(ids)}, time.monotonic() + args.timeout, r
    )
    if done:
        fill_throughput(r, (max(done.values()) - first) / 1000.0, len(done), 0)
        fill_latency(r, [done[i] - raised[i] for i in done])
    r.extra["wakeup_per_s"] = r.orch_per_s


async def w6(rt: duro.Runtime, client: duro.Client, args: argparse.Namespace, r: RunResult) -> None:
    """W2 at backlog size: n chains started back to back, drained; then the SQLite file's
    size, and again after deleting every completed instance (pages are kept for reuse)."""
    await _batch(client, args, r, chain, args.k)
    db = os.path.join(args.db_dir, "duro.db")
    if args.config == "memory":
        return
    r.extra["file_mb_drained"], r.extra["wal_mb_drained"] = _sizes_mb(db)
    began = time.monotonic()
    r.extra["deleted"] = await client.delete_instances(states={duro.State.COMPLETED})
    r.extra["delete_s"] = time.monotonic() - began
    r.extra["file_mb_after_delete"], r.extra["wal_mb_after_delete"] = _sizes_mb(db)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        free, total = (
            con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_count")
        )
    r.extra["free_page_share_after_delete"] = free / total if total else None


def _sizes_mb(db: str) -> tuple[float, float]:
    """The database file and its WAL (bounded by checkpoints), in MB."""
    wal = db + "-wal"
    return os.path.getsize(db) / 2**20, (os.path.getsize(wal) if os.path.exists(wal) else 0) / 2**20


WORKLOADS: dict[str, Workload] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W5X": w5,
    "W6": w6,
}
"""IDLE has no workload function: :func:`_run_cosmos` measures it directly."""


def _run(args: argparse.Namespace, result: RunResult) -> None:
    cell = CosmosCell.parse(args.config)
    if cell is not None:
        anyio.run(_run_cosmos, cell, args, result)
        return
    if args.workload == "IDLE":
        raise NotApplicable("IDLE measures Cosmos request traffic; run it with a cosmos config")
    if args.config in SQLITE_PROCESSES:
        anyio.run(_run_sqlite_processes, args, result)
        return
    factory = PROVIDERS.get(args.config)
    if factory is None:
        raise NotApplicable(f"unknown duro provider {args.config!r}")
    store = factory(args.db_dir)

    async def main() -> None:
        async with duro.Runtime(store, registry) as rt:
            client = duro.Client(store, registry=registry)
            await WORKLOADS[args.workload](rt, client, args, result)

    anyio.run(main)


async def _run_sqlite_processes(args: argparse.Namespace, result: RunResult) -> None:
    """One SQLite file served by this process's runtime and the cell's extra processes."""
    if args.workload not in MULTI_PROCESS_WORKLOADS:
        raise NotApplicable(f"{args.workload} measures one process")
    from ._runtime_process import ROLES

    role, extra_roles = SQLITE_PROCESSES[args.config]
    path = os.path.join(args.db_dir, "duro.db")
    store = duro.SqliteProvider(path)
    processes = RuntimeProcesses(args.db_dir)
    async with store:  # the file and its schema exist before the other processes open it
        for i, extra_role in enumerate(extra_roles, start=1):
            processes.spawn(f"runtime-{i}", ["--sqlite", path], extra_role)
        try:
            await processes.wait_ready()
            options = duro.RuntimeOptions(**ROLES[role])
            async with duro.Runtime(store, registry, options) as rt:
                client = duro.Client(store, registry=registry)
                await WORKLOADS[args.workload](rt, client, args, result)
        finally:
            others = await processes.stop()
    result.extra["processes"] = 1 + len(extra_roles)
    # How the turns spread: the harness's runtime first (it also starts the workflows).
    result.extra["turns_by_process"] = [
        rt.turns_committed,
        *(o["turns_committed"] for o in others.values()),
    ]
    result.extra["cpu_s_all_processes"] = cpu_seconds() + sum(o["cpu_s"] for o in others.values())
    result.extra["peak_rss_mb_other_processes"] = max(
        (o["peak_rss_mb"] for o in others.values()), default=None
    )


async def _run_cosmos(cell: CosmosCell, args: argparse.Namespace, result: RunResult) -> None:
    result.extra.update(cosmos_partitions=cell.partitions, cosmos_runtimes=cell.runtimes)
    async with CosmosStack(cell, args.db_dir) as stack:
        async with duro.Runtime(stack.store, registry) as rt:
            client = duro.Client(stack.client_store, registry=registry)
            if args.workload == "IDLE":
                await anyio.sleep(IDLE_WARMUP_SECONDS)
                await _measure_idle(stack, float(args.n), result)
                return
            before = stack.meter()
            await WORKLOADS[args.workload](rt, client, args, result)
            busy = stack.meter().minus(before)
            await _measure_idle(stack, IDLE_SECONDS, result)
        others = await stack.stop_workers()  # their counts are final once they stopped
        turns = rt.turns_committed + sum(s["turns_committed"] for s in others.values())
        activities = rt.activities_completed + sum(
            s["activities_completed"] for s in others.values()
        )
        result.extra.update(
            busy_figures(busy, orchestrations=args.n, activities=activities, turns=turns)
        )
        result.extra["meter_busy"] = busy.to_json()


async def _measure_idle(stack: CosmosStack, seconds: float, result: RunResult) -> None:
    before = stack.meter()
    await anyio.sleep(seconds)
    idle = stack.meter().minus(before)
    result.extra.update(idle_figures(idle, seconds=seconds, runtimes=stack.cell.runtimes))
    result.extra["meter_idle"] = idle.to_json()


if __name__ == "__main__":
    from importlib.metadata import version

    run_main(
        "duro",
        {w: _run for w in [*WORKLOADS, "IDLE"]},
        {"duro": version("duro"), "msgspec": version("msgspec"), "anyio": version("anyio")},
    )
