"""duroxide (PyPI 0.2.2, Python SDK over the Rust runtime) running W1-W5 on its SQLite file store.

Runs from its own virtual environment (``benchmarks/.peers/duroxide``), never duro's:

    benchmarks/.peers/duroxide/bin/python -m benchmarks.peers.duroxide_workloads \
        --workload W1 --config default --db-dir /tmp/x

Driven as in ``shared/reference/peers.md``: ``SqliteProvider.open(<tmp>/dx.db)``, one sync
client starting instances back-to-back, generator orchestrations, sync activities. duroxide's
SQLite store leaves ``created_at``/``started_at`` at 0, so latency runs from our own start call
to ``ExecutionInfo.completed_at`` (the durable completion time, wall ms).
"""

from __future__ import annotations

import argparse
import os
import time
from importlib.metadata import version
from typing import Any

import duroxide as dx

from .._protocol import (
    TIMER_SECONDS,
    RunResult,
    current_rss_bytes,
    fill_latency,
    fill_throughput,
    now_ms,
    run_main,
    w4_turn_costs,
)

CONFIGS: dict[str, dict[str, Any]] = {
    # RuntimeOptions() as shipped: orchestration_concurrency=4, worker_concurrency=8, poll 100 ms.
    "default": {},
    # peers.md's "tuned": a 10 ms dispatcher poll (the knob that matters for latency).
    "poll10": {"dispatcher_poll_interval_ms": 10},
}

_step_times: list[float] = []


def _build(args: argparse.Namespace) -> tuple[dx.Runtime, dx.Client]:
    provider = dx.SqliteProvider.open(os.path.join(args.db_dir, "dx.db"))
    runtime = dx.Runtime(provider, dx.RuntimeOptions(**CONFIGS[args.config]))

    @runtime.register_activity("echo")
    def echo(ctx: Any, x: int) -> int:
        return x

    @runtime.register_activity("inc")
    def inc(ctx: Any, x: int) -> int:
        return x + 1

    @runtime.register_activity("step")
    def step(ctx: Any, i: int) -> int:
        _step_times.append(time.perf_counter())
        return i

    @runtime.register_orchestration("fan_out")
    def fan_out(ctx: Any, inp: list[int]) -> Any:
        seed, k = inp
        results = yield ctx.all([ctx.schedule_activity("echo", seed * 100 + i) for i in range(k)])
        return dx.parse_result(results)

    @runtime.register_orchestration("chain")
    def chain(ctx: Any, inp: list[int]) -> Any:
        acc, k = inp
        for _ in range(k):
            acc = yield ctx.schedule_activity("inc", acc)
        return acc

    @runtime.register_orchestration("timer")
    def timer(ctx: Any, seq: int) -> Any:
        yield ctx.schedule_timer(int(TIMER_SECONDS * 1000))
        return seq

    @runtime.register_orchestration("long_history")
    def long_history(ctx: Any, k: int) -> Any:
        for i in range(k):
            got = yield ctx.schedule_activity("step", i)
            if got != i:
                raise ValueError(f"step {i} returned {got!r}")
        return k

    @runtime.register_orchestration("waiter")
    def waiter(ctx: Any, i: int) -> Any:
        data = yield ctx.wait_for_event("go")
        return int(data) + i

    runtime.start()
    return runtime, dx.Client(provider)


def _is_store_error(error: str | None) -> bool:
    text = (error or "").lower()
    return "database is locked" in text or "infrastructure" in text or "database locked" in text


def _collect(
    client: dx.Client, expected: dict[str, Any], deadline: float, r: RunResult
) -> dict[str, float]:
    done: dict[str, float] = {}
    for instance_id, want in expected.items():
        remaining_ms = int(max(100.0, (deadline - time.monotonic()) * 1000))
        try:
            status = client.wait_for_orchestration(instance_id, remaining_ms)
        except Exception as exc:  # duroxide raises a plain RuntimeError on timeout
            r.fail(f"{instance_id}: {exc}")
            continue
        r.checked += 1
        if status.status != "Completed":
            r.fail(
                f"{instance_id}: {status.status}: {status.error}",
                store=_is_store_error(status.error),
            )
        elif status.output != want:
            r.fail(f"{instance_id}: output {status.output!r}, expected {want!r}")
        else:
            info = client.get_execution_info(instance_id, 1)
            done[instance_id] = float(info.completed_at)
    return done


def _batch(args: argparse.Namespace, r: RunResult, orch: str) -> None:
    runtime, client = _build(args)
    try:
        expected: dict[str, Any] = {}
        started: dict[str, float] = {}
        first = now_ms()
        for seed in range(args.n):
            instance_id = f"{args.workload.lower()}-{seed}"
            started[instance_id] = now_ms()
            client.start_orchestration(instance_id, orch, [seed, args.k])
            if orch == "fan_out":
                expected[instance_id] = [seed * 100 + i for i in range(args.k)]
            else:
                expected[instance_id] = seed + args.k
        r.extra["start_s"] = (now_ms() - first) / 1000.0
        done = _collect(client, expected, time.monotonic() + args.timeout, r)
        if done:
            fill_throughput(r, (max(done.values()) - first) / 1000.0, len(done), len(done) * args.k)
            fill_latency(r, [done[i] - started[i] for i in done])
    finally:
        runtime.shutdown(2000)


def w1(args: argparse.Namespace, r: RunResult) -> None:
    _batch(args, r, "fan_out")


def w2(args: argparse.Namespace, r: RunResult) -> None:
    _batch(args, r, "chain")


def w3(args: argparse.Namespace, r: RunResult) -> None:
    runtime, client = _build(args)
    try:
        latencies: list[float] = []
        first = now_ms()
        last = first
        for seq in range(args.n):
            instance_id = f"w3-{seq}"
            begin = now_ms()
            client.start_orchestration(instance_id, "timer", seq)
            done = _collect(client, {instance_id: seq}, time.monotonic() + args.timeout, r)
            if instance_id in done:
                latencies.append(done[instance_id] - begin)
                last = done[instance_id]
        fill_throughput(r, (last - first) / 1000.0, len(latencies), 0)
        fill_latency(r, latencies)
    finally:
        runtime.shutdown(2000)


def w4(args: argparse.Namespace, r: RunResult) -> None:
    runtime, client = _build(args)
    try:
        first = now_ms()
        client.start_orchestration("w4", "long_history", args.k)
        done = _collect(client, {"w4": args.k}, time.monotonic() + args.timeout, r)
        if "w4" in done:
            fill_throughput(r, (done["w4"] - first) / 1000.0, 1, args.k)
            fill_latency(r, [done["w4"] - first])
        r.extra.update(w4_turn_costs(_step_times, args.k))
    finally:
        runtime.shutdown(2000)


def w5(args: argparse.Namespace, r: RunResult) -> None:
    runtime, client = _build(args)
    try:
        rss_base = current_rss_bytes()
        t0 = time.monotonic()
        ids = [f"w5-{i}" for i in range(args.n)]
        for i, instance_id in enumerate(ids):
            client.start_orchestration(instance_id, "waiter", i)
        deadline = t0 + args.timeout
        # All are waiting once nothing is queued for the orchestrator and every instance runs.
        while time.monotonic() < deadline:
            depths = client.get_queue_depths()
            if (
                depths.orchestrator_queue == 0
                and client.get_system_metrics().running_instances >= args.n
            ):
                break
            time.sleep(0.1)
        else:
            raise TimeoutError("instances did not all reach their wait")
        r.extra["start_and_wait_s"] = time.monotonic() - t0
        rss_waiting = current_rss_bytes()
        r.extra["rss_baseline_mb"] = rss_base / 2**20
        r.extra["rss_waiting_mb"] = rss_waiting / 2**20
        r.extra["bytes_per_waiting_instance"] = (rss_waiting - rss_base) / args.n
        raised: dict[str, float] = {}
        first = now_ms()
        for i, instance_id in enumerate(ids):
            raised[instance_id] = now_ms()
            client.raise_event(instance_id, "go", 2 * i)
        expected = {x: 3 * i for i, x in enumerate(ids)}
        done = _collect(client, expected, time.monotonic() + args.timeout, r)
        if done:
            fill_throughput(r, (max(done.values()) - first) / 1000.0, len(done), 0)
            fill_latency(r, [done[i] - raised[i] for i in done])
        r.extra["wakeup_per_s"] = r.orch_per_s
    finally:
        runtime.shutdown(2000)


if __name__ == "__main__":
    run_main(
        "duroxide",
        {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5},
        {"duroxide": version("duroxide")},
    )
