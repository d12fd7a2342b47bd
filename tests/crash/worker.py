"""The crash test's child process: a ``duro.Runtime`` on one SQLite file, run until done.

    python -m tests.crash.worker --db PATH --log PATH --run LABEL

The parent (``test_sigkill_recovery.py``) starts the orchestrations, launches this script,
SIGKILLs it somewhere in the middle of the workload and launches it again on the same file.
Each run processes whatever the file holds and exits 0 once every orchestration of the
workload has finished.

Every activity execution appends ``run,instance,step,attempt`` to the log file (one
``O_APPEND`` write, then ``fsync``) *before* it returns, so an activity whose completion was
committed always has a line in the log, and a re-execution shows up as a second line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio
import anyio.to_thread

import duro

N_INSTANCES = 30
CHAIN = 4
"""Sequential activities per orchestration, each fed the previous result."""
FAN = 5
"""Activities per orchestration run in parallel (``ctx.join``) after the chain."""
TIMER_SECONDS = 0.3
"""A durable timer between the fan-out and the final activity."""
STEPS = [*(f"chain-{i}" for i in range(CHAIN)), *(f"fan-{j}" for j in range(FAN)), "final"]
"""Every activity step of one orchestration (unique within the orchestration)."""

BEFORE_LOG = 0.005
"""An activity sleeps this long after it was fetched and before it writes its log line..."""
AFTER_LOG = 0.02
"""...and this long after the line and before it returns: a kill often lands in between."""

ORCHESTRATION = "crash_pipeline"

registry = duro.Registry()
_log_path: str | None = None
_run_label = "?"


def instance_ids() -> list[str]:
    return [f"crash-{i:02d}" for i in range(N_INSTANCES)]


def seed_of(instance_id: str) -> int:
    return int(instance_id.rsplit("-", 1)[1])


def step_result(value: int) -> int:
    return (value * 3 + 1) % 1_000_003


def expected_output(seed: int) -> int:
    """What ``crash_pipeline(seed)`` returns, computed without duro."""
    value = seed
    for _ in range(CHAIN):
        value = step_result(value)
    parts = [step_result(value + j) for j in range(FAN)]
    return step_result(sum(parts))


def _append_line(line: str) -> None:
    assert _log_path is not None, "the log path is set by main()"
    fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short O_APPEND write: lines never interleave
        os.fsync(fd)
    finally:
        os.close(fd)


@registry.activity
async def crash_step(ctx: duro.ActivityContext, job: dict[str, Any]) -> int:
    await anyio.sleep(BEFORE_LOG)
    line = f"{_run_label},{ctx.instance_id},{job['step']},{ctx.attempt}\n"
    await anyio.to_thread.run_sync(_append_line, line)
    await anyio.sleep(AFTER_LOG)
    return step_result(int(job["value"]))


@registry.orchestration(name=ORCHESTRATION)
async def crash_pipeline(ctx: duro.OrchestrationContext, seed: int) -> int:
    value = seed
    for i in range(CHAIN):
        value = await ctx.schedule_activity(crash_step, {"step": f"chain-{i}", "value": value})
    parts = await ctx.join(
        [
            ctx.schedule_activity(crash_step, {"step": f"fan-{j}", "value": value + j})
            for j in range(FAN)
        ]
    )
    await ctx.schedule_timer(TIMER_SECONDS)
    result: int = await ctx.schedule_activity(crash_step, {"step": "final", "value": sum(parts)})
    return result


def runtime_options(lock_timeout: float) -> duro.RuntimeOptions:
    return duro.RuntimeOptions(
        orchestration_concurrency=4,
        activity_concurrency=8,
        # Short locks: after a kill, the dead process's locks expire quickly.
        orchestration_lock_timeout=lock_timeout,
        activity_lock_timeout=lock_timeout,
        poll_timeout=0.25,
        idle_backoff_min=0.0,
        idle_backoff_max=0.05,
        shutdown_grace_period=1.0,
        activity_cancellation_grace=0.5,
        max_sessions=0,
    )


async def start_workload(db: str) -> None:
    """Start every orchestration of the workload (the parent does this before any run)."""
    async with duro.SqliteProvider(db) as store:
        client = duro.Client(store)
        for instance_id in instance_ids():
            await client.start_orchestration(instance_id, ORCHESTRATION, seed_of(instance_id))


async def run(db: str, lock_timeout: float, timeout: float) -> None:
    store = duro.SqliteProvider(db)
    async with store, duro.Runtime(store, registry, runtime_options(lock_timeout)) as runtime:
        for instance_id in instance_ids():
            status = await runtime.client.wait_for_orchestration(instance_id, timeout=timeout)
            if status.state is not duro.State.COMPLETED:
                raise SystemExit(f"{instance_id} ended {status.state.value}: {status.error}")


def main(argv: list[str] | None = None) -> None:
    global _log_path, _run_label
    parser = argparse.ArgumentParser(prog="python -m tests.crash.worker", description=__doc__)
    parser.add_argument("--db", required=True, help="the SQLite file")
    parser.add_argument("--log", required=True, help="the activity execution log (appended)")
    parser.add_argument("--run", required=True, help="label written in this run's log lines")
    parser.add_argument("--lock-timeout", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after (seconds)")
    args = parser.parse_args(argv)
    if "," in args.run:
        parser.error("--run must not contain a comma")
    _log_path, _run_label = args.log, args.run
    anyio.run(run, args.db, args.lock_timeout, args.timeout)


if __name__ == "__main__":
    main()
