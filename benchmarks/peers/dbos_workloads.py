"""DBOS Transact (PyPI 3.4.0) running W1-W5 on its SQLite system database.

Runs from its own virtual environment (``benchmarks/.peers/dbos``), never duro's:

    benchmarks/.peers/dbos/bin/python -m benchmarks.peers.dbos_workloads \
        --workload W1 --config async-default --db-dir /tmp/x

Driven as in ``shared/reference/peers.md``'s "DBOS async" rows: ``async def`` workflows and
steps, fan-out with ``asyncio.gather``, ``start_workflow_async`` from one client on the same
loop, ``DBOS.sleep_async`` for the durable timer, ``recv_async``/``send_async`` for external
events. DBOS's SQLite timestamps are whole seconds on Python < 3.12, so completion times come
from done-callbacks on the in-process workflow task (which resolves after the output is
recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from importlib.metadata import version
from typing import Any

from dbos import DBOS, DBOSConfig

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
    "async-default": {},
    # peers.md's "DBOS async tuned": a bounded executor and pool stop threads fighting over
    # the SQLite write lock.
    "async-tuned": {"max_executor_threads": 4, "sys_db_pool_size": 4},
}

_step_times: list[float] = []


@DBOS.step()
async def echo(x: int) -> int:
    return x


@DBOS.step()
async def inc(x: int) -> int:
    return x + 1


@DBOS.step()
async def step(i: int) -> int:
    _step_times.append(time.perf_counter())
    return i


@DBOS.workflow()
async def fan_out(seed: int, k: int) -> list[int]:
    return list(await asyncio.gather(*[echo(seed * 100 + i) for i in range(k)]))


@DBOS.workflow()
async def chain(acc: int, k: int) -> int:
    for _ in range(k):
        acc = await inc(acc)
    return acc


@DBOS.workflow()
async def timer(seq: int) -> int:
    await DBOS.sleep_async(TIMER_SECONDS)
    return seq


@DBOS.workflow()
async def long_history(k: int) -> int:
    for i in range(k):
        got = await step(i)
        if got != i:
            raise ValueError(f"step {i} returned {got!r}")
    return k


@DBOS.workflow()
async def waiter(i: int) -> int:
    data = await DBOS.recv_async("go", timeout_seconds=3600)
    return int(data) + i


def _is_store_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "locked" in text or "operationalerror" in text or "busy" in text


class _Tracker:
    """Starts workflows and stamps each one's completion from its in-process task."""

    def __init__(self, r: RunResult) -> None:
        self.r = r
        self.done_ms: dict[str, float] = {}
        self.handles: dict[str, Any] = {}
        self.expected: dict[str, Any] = {}

    async def start(self, workflow_id: str, want: Any, fn: Any, *args: Any) -> None:
        from dbos import SetWorkflowID

        with SetWorkflowID(workflow_id):
            handle = await DBOS.start_workflow_async(fn, *args)
        self.handles[workflow_id] = handle
        self.expected[workflow_id] = want
        handle.task.add_done_callback(
            lambda _t, w=workflow_id: self.done_ms.setdefault(w, now_ms())
        )

    async def collect(self, timeout: float) -> dict[str, float]:
        ok: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        for workflow_id, handle in self.handles.items():
            try:
                got = await asyncio.wait_for(
                    handle.get_result(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                self.r.fail(f"{workflow_id}: timed out")
                continue
            except Exception as exc:
                self.r.checked += 1
                self.r.fail(
                    f"{workflow_id}: {type(exc).__name__}: {exc}", store=_is_store_error(exc)
                )
                continue
            self.r.checked += 1
            want = self.expected[workflow_id]
            if got != want:
                self.r.fail(f"{workflow_id}: output {got!r}, expected {want!r}")
            else:
                ok[workflow_id] = self.done_ms.get(workflow_id, now_ms())
        return ok


async def _batch(args: argparse.Namespace, r: RunResult, fn: Any) -> None:
    tracker = _Tracker(r)
    started: dict[str, float] = {}
    first = now_ms()
    for seed in range(args.n):
        workflow_id = f"{args.workload.lower()}-{seed}"
        started[workflow_id] = now_ms()
        if fn is fan_out:
            await tracker.start(
                workflow_id, [seed * 100 + i for i in range(args.k)], fn, seed, args.k
            )
        else:
            await tracker.start(workflow_id, seed + args.k, fn, seed, args.k)
    r.extra["start_s"] = (now_ms() - first) / 1000.0
    done = await tracker.collect(args.timeout)
    if done:
        fill_throughput(r, (max(done.values()) - first) / 1000.0, len(done), len(done) * args.k)
        fill_latency(r, [done[i] - started[i] for i in done])


async def w1(args: argparse.Namespace, r: RunResult) -> None:
    await _batch(args, r, fan_out)


async def w2(args: argparse.Namespace, r: RunResult) -> None:
    await _batch(args, r, chain)


async def w3(args: argparse.Namespace, r: RunResult) -> None:
    latencies: list[float] = []
    first = now_ms()
    last = first
    for seq in range(args.n):
        tracker = _Tracker(r)
        workflow_id = f"w3-{seq}"
        begin = now_ms()
        await tracker.start(workflow_id, seq, timer, seq)
        done = await tracker.collect(args.timeout)
        if workflow_id in done:
            latencies.append(done[workflow_id] - begin)
            last = done[workflow_id]
    fill_throughput(r, (last - first) / 1000.0, len(latencies), 0)
    fill_latency(r, latencies)


async def w4(args: argparse.Namespace, r: RunResult) -> None:
    tracker = _Tracker(r)
    first = now_ms()
    await tracker.start("w4", args.k, long_history, args.k)
    done = await tracker.collect(args.timeout)
    if "w4" in done:
        fill_throughput(r, (done["w4"] - first) / 1000.0, 1, args.k)
        fill_latency(r, [done["w4"] - first])
    r.extra.update(w4_turn_costs(_step_times, args.k))
    r.extra["note"] = "DBOS checkpoints steps and does not replay: its turn is one step's write"


async def w5(args: argparse.Namespace, r: RunResult) -> None:
    tracker = _Tracker(r)
    rss_base = current_rss_bytes()
    t0 = time.monotonic()
    ids = [f"w5-{i}" for i in range(args.n)]
    for i, workflow_id in enumerate(ids):
        await tracker.start(workflow_id, 3 * i, waiter, i)
    # A workflow is waiting once its recv has registered in DBOS's notification map (an
    # internal; without it, fall back to a fixed settle time).
    from dbos._dbos import _get_dbos_instance

    waiting = getattr(getattr(_get_dbos_instance(), "_sys_db", None), "notifications_map", None)
    deadline = time.monotonic() + args.timeout
    if waiting is not None and hasattr(waiting, "_dict"):
        while len(waiting._dict) < args.n and time.monotonic() < deadline:  # noqa: ASYNC110 (polling a counter)
            await asyncio.sleep(0.05)
        r.extra["waiting_registered"] = len(waiting._dict)
    else:
        await asyncio.sleep(2.0)
    r.extra["start_and_wait_s"] = time.monotonic() - t0
    rss_waiting = current_rss_bytes()
    r.extra["rss_baseline_mb"] = rss_base / 2**20
    r.extra["rss_waiting_mb"] = rss_waiting / 2**20
    r.extra["bytes_per_waiting_instance"] = (rss_waiting - rss_base) / args.n
    raised: dict[str, float] = {}
    first = now_ms()
    for i, workflow_id in enumerate(ids):
        raised[workflow_id] = now_ms()
        await DBOS.send_async(workflow_id, 2 * i, topic="go")
    done = await tracker.collect(args.timeout)
    if done:
        fill_throughput(r, (max(done.values()) - first) / 1000.0, len(done), 0)
        fill_latency(r, [done[i] - raised[i] for i in done])
    r.extra["wakeup_per_s"] = r.orch_per_s


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5}


def _run(args: argparse.Namespace, r: RunResult) -> None:
    config: DBOSConfig = {
        "name": "duro-bench",
        "system_database_url": f"sqlite:///{os.path.join(args.db_dir, 'dbos.sqlite')}",
        "log_level": "WARNING",
        **CONFIGS[args.config],  # type: ignore[typeddict-item]
    }
    logging.getLogger("dbos").setLevel(logging.WARNING)

    async def main() -> None:
        DBOS(config=config)
        DBOS.launch()
        try:
            await WORKLOADS[args.workload](args, r)
        finally:
            DBOS.destroy(workflow_completion_timeout_sec=0)

    asyncio.run(main())


if __name__ == "__main__":
    run_main(
        "dbos",
        {w: _run for w in WORKLOADS},
        {"dbos": version("dbos"), "sqlalchemy": version("sqlalchemy")},
    )
