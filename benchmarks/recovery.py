"""How long a SQLite worker's in-flight work waits after the worker is SIGKILLed.

    python -m benchmarks.recovery [--instances 8] [--steps 20] [--repeat 3] [--json PATH]

Issue 12's case: ``--instances`` chains of ``--steps`` activities (each ~0.2 s) run in one
worker process on one SQLite file; once every chain is under way the worker is SIGKILLed
mid-step. Each way back is measured in turn, on a fresh file:

* ``restart-new-id``: a new worker starts at once, as a process manager restarts one, with
  the default worker id (new on every start): it takes the dead worker's items over once
  their locks expire;
* ``restart-same-id``: the same, with a stable ``worker_id`` (a pod or host name): the new
  worker takes its predecessor's locks back at once;
* ``survivor``: a second worker was running all along and takes the work over; nothing
  restarts;
* ``old-defaults``: ``restart-new-id`` with the lock timeouts of duro 0.1 (30 s turns, 60 s
  activities): the figure the issue measured.

Recovery of one interrupted step = from the kill to the start of its next execution (the
kill lands mid-step in every chain). Reported: p50 and max over all steps and repeats, and
the time from the kill until every chain completed. Target (issue 12): 10 s with defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import duro

TARGET_S = 10.0
STEP_SECONDS = 0.2

registry = duro.Registry()


@registry.activity
async def step(ctx: duro.ActivityContext, arg: dict[str, Any]) -> int:
    line = {"key": f"{ctx.instance_id}/{arg['n']}", "start": time.time(), "pid": os.getpid()}
    fd = os.open(os.environ["RECOVERY_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    await anyio.sleep(STEP_SECONDS)
    value: int = arg["value"] + 1
    return value


@registry.orchestration
async def chain(ctx: duro.OrchestrationContext, steps: int) -> int:
    value = 0
    for n in range(steps):
        value = await ctx.schedule_activity(step, {"n": n, "value": value})
    return value


# -- the worker process ------------------------------------------------------------------------


async def _serve(db: str, worker_id: str | None, lock_timeout: float | None) -> None:
    overrides: dict[str, Any] = {"max_sessions": 0}
    if worker_id:
        overrides["worker_id"] = worker_id
    if lock_timeout is not None:
        overrides["orchestration_lock_timeout"] = lock_timeout / 2
        overrides["activity_lock_timeout"] = lock_timeout
    async with duro.Runtime(duro.SqliteProvider(db), registry, duro.RuntimeOptions(**overrides)):
        await anyio.sleep_forever()


def _worker(db: Path, log: Path, worker_id: str | None, lock_timeout: float | None) -> Any:
    args = [sys.executable, "-m", "benchmarks.recovery", "--serve", str(db)]
    if worker_id:
        args += ["--worker-id", worker_id]
    if lock_timeout is not None:
        args += ["--lock-timeout", str(lock_timeout)]
    env = {**os.environ, "RECOVERY_LOG": str(log)}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- the measurement ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    stable_id: bool = False
    survivor: bool = False
    lock_timeout: float | None = None


CASES = [
    Case("restart-new-id"),
    Case("restart-same-id", stable_id=True),
    Case("survivor", survivor=True),
    Case("old-defaults", lock_timeout=60.0),
]


def _runs(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def _measure(case: Case, instances: int, steps: int, tmp: Path) -> dict[str, Any]:
    db, log = tmp / f"{case.name}.db", tmp / f"{case.name}.log"
    worker_id = "bench-worker" if case.stable_id else None
    client = duro.Client(duro.SqliteProvider(db), registry=registry)
    ids = [f"chain-{n}" for n in range(instances)]
    for instance_id in ids:
        await client.start_orchestration(instance_id, chain, steps)
    workers = [_worker(db, log, worker_id, case.lock_timeout)]
    if case.survivor:
        workers.append(_worker(db, log, None, case.lock_timeout))
    try:
        # Kill, once every chain is a few steps in, a worker that just began a step (mid-step).
        while True:
            runs = _runs(log)
            now = time.time()
            busy = {r["pid"] for r in runs if r["start"] > now - STEP_SECONDS / 2}
            doomed = next((w for w in workers if w.pid in busy), None)
            if len(runs) >= 3 * instances and doomed is not None:
                break
            await anyio.sleep(0.01)
        doomed.send_signal(signal.SIGKILL)
        killed_at = time.time()
        doomed.wait()
        in_flight = {
            r["key"]
            for r in _runs(log)
            if r["pid"] == doomed.pid and r["start"] > killed_at - STEP_SECONDS
        }
        if not case.survivor:
            workers.append(_worker(db, log, worker_id, case.lock_timeout))
        for instance_id in ids:
            status = await client.wait_for_orchestration(instance_id, timeout=300)
            assert status.output == steps, (instance_id, status)
        all_done = time.time() - killed_at
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
        await client.store.close()
    recoveries: list[float] = []
    for key in in_flight:  # a step whose result was committed before the kill never re-runs
        later = [r["start"] for r in _runs(log) if r["key"] == key and r["start"] > killed_at]
        if later:
            recoveries.append(min(later) - killed_at)
    return {"case": case.name, "recoveries": recoveries, "all_done": all_done}


async def measure(instances: int, steps: int, repeat: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for case in CASES:
        samples: list[float] = []
        done: list[float] = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix="duro-recovery-") as tmp:
                run = await _measure(case, instances, steps, Path(tmp))
            samples += run["recoveries"]
            done.append(run["all_done"])
        results.append(
            {
                "case": case.name,
                "interrupted_steps": len(samples),
                "recovery_p50_s": statistics.median(samples),
                "recovery_max_s": max(samples),
                "all_done_after_kill_s": statistics.median(done),
            }
        )
        print(_line(results[-1]), flush=True)
    return results


def _line(result: dict[str, Any]) -> str:
    verdict = ""
    if result["case"] != "old-defaults":
        ok = result["recovery_max_s"] <= TARGET_S
        verdict = f"  {'PASS' if ok else 'FAIL'} (target {TARGET_S:.0f} s)"
    return (
        f"{result['case']:16s} {result['interrupted_steps']:3d} interrupted steps: taken up "
        f"p50 {result['recovery_p50_s']:5.2f} s, max {result['recovery_max_s']:5.2f} s after "
        f"the kill; every chain done after {result['all_done_after_kill_s']:5.1f} s{verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recovery")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also save the figures here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", help=argparse.SUPPRESS)
    parser.add_argument("--lock-timeout", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(_serve, args.serve, args.worker_id, args.lock_timeout)
        return
    results = anyio.run(measure, args.instances, args.steps, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
