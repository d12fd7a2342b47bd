"""What one benchmark run measures and how it reports it: shared by every workload script.

Standard library only: the peer scripts import this module from their own virtual
environments, which have neither duro nor its dependencies.

A workload script runs exactly one (workload, system, config) in its own process, then prints
one line ``BENCH-RESULT {json}`` on stdout; ``benchmarks.run`` collects it. Peak RSS and CPU
seconds are therefore per run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "

WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
"""The suite every system runs."""
DURO_ONLY_WORKLOADS = ("W5X", "W6", "IDLE")
"""Workloads only duro runs: W5X is W5 at 100,000 waiting instances, W6 a backlog of
100,000 W2 chains drained (then bulk-deleted); IDLE is Cosmos runtimes with no work for
``n`` seconds."""
COSMOS_ONLY_WORKLOADS = ("IDLE",)
ALL_WORKLOADS = WORKLOADS + DURO_ONLY_WORKLOADS

# Issue 5's sizes. --quick and the peers' W5 pass smaller ones on the command line.
DEFAULT_SIZES: dict[str, dict[str, int]] = {
    "W1": {"n": 200, "k": 5},
    "W2": {"n": 200, "k": 5},
    "W3": {"n": 20, "k": 0},
    "W4": {"n": 1, "k": 2000},
    "W5": {"n": 10_000, "k": 0},
    "W5X": {"n": 100_000, "k": 0},
    "W6": {"n": 100_000, "k": 5},
    "IDLE": {"n": 10, "k": 0},
}

TIMER_SECONDS = 0.010
"""W3's durable timer."""

# W4: turn cost is sampled in three windows of history position. A step (one sequential
# activity) adds two events, ActivityScheduled and ActivityCompleted, so step i ends near event
# 2 * i: "early" is around event 20, "mid" around event k (2,000 in the full run), "last"
# around event 2 * k.
W4_WINDOW = 20


@dataclass
class RunResult:
    system: str
    config: str
    workload: str
    n: int
    k: int
    wall_s: float | None = None
    orch_per_s: float | None = None
    act_per_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    """User + system seconds of the whole process, start-up included (as in peers.md)."""
    startup_cpu_s: float | None = None
    """The part of ``cpu_s`` spent before the workload began (imports, store, runtime)."""
    failures: int = 0
    """Orchestrations that failed, timed out or returned a wrong result."""
    store_failures: int = 0
    """Of ``failures``, those whose error came from the store (SQLite busy and the like)."""
    checked: int = 0
    """Results checked against their expected value."""
    failure_samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Set when the run itself could not complete; the figures are then missing."""
    versions: dict[str, str] = field(default_factory=dict)

    def fail(self, message: str, *, store: bool = False) -> None:
        self.failures += 1
        if store:
            self.store_failures += 1
        if len(self.failure_samples) < 3:
            self.failure_samples.append(message[:300])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_bytes() -> int:
    """Resident set size now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def now_ms() -> float:
    """Wall clock in ms: comparable with the stores' durable timestamps."""
    return time.time_ns() / 1e6


def fill_throughput(result: RunResult, wall_s: float, orchestrations: int, activities: int) -> None:
    result.wall_s = wall_s
    if wall_s > 0:
        result.orch_per_s = orchestrations / wall_s
        result.act_per_s = activities / wall_s if activities else None


def fill_latency(result: RunResult, latencies_ms: Sequence[float]) -> None:
    result.p50_ms = percentile(latencies_ms, 50)
    result.p95_ms = percentile(latencies_ms, 95)
    result.p99_ms = percentile(latencies_ms, 99)


def w4_turn_costs(step_times: Sequence[float], k: int) -> dict[str, Any]:
    """Per-step cycle time (activity invocation i to i+1, ms) summarised in W4's windows.

    One cycle is: the activity completes, the orchestration's turn for that completion runs
    and commits the next schedule, the worker fetches it and invokes the next activity. Only
    the turn's share can grow with history, so a cycle that stays flat shows the turn does.
    """
    cycles = [(b - a) * 1000.0 for a, b in itertools.pairwise(step_times)]
    half = W4_WINDOW // 2
    windows = {
        "early": (10 - half, 10 + half),
        "mid": (k // 2 - half, k // 2 + half),
        "last": (len(cycles) - W4_WINDOW, len(cycles)),
    }
    out: dict[str, Any] = {"steps_timed": len(step_times), "mid_event": k}
    for name, (lo, hi) in windows.items():
        out[f"turn_ms_{name}"] = median(cycles[max(0, lo) : hi])
    early = out["turn_ms_early"]
    for name in ("mid", "last"):
        later = out[f"turn_ms_{name}"]
        out[f"growth_{name}_vs_early"] = later / early if early and later else None
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one benchmark workload in this process.")
    parser.add_argument("--workload", required=True, choices=ALL_WORKLOADS)
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--n", type=int, default=None, help="orchestrations (W4: ignored; IDLE: seconds)"
    )
    parser.add_argument("--k", type=int, default=None, help="activities per orchestration")
    parser.add_argument("--db-dir", required=True, help="fresh directory for the store")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-wait limit, seconds")
    args = parser.parse_args(argv)
    sizes = DEFAULT_SIZES[args.workload]
    args.n = sizes["n"] if args.n is None else args.n
    args.k = sizes["k"] if args.k is None else args.k
    return args


def run_main(
    system: str,
    workloads: dict[str, Callable[[argparse.Namespace, RunResult], None]],
    versions: dict[str, str],
    argv: Sequence[str] | None = None,
) -> None:
    """Entry point of a workload script: run one workload, print its ``BENCH-RESULT`` line."""
    args = parse_args(argv)
    result = RunResult(
        system=system, config=args.config, workload=args.workload, n=args.n, k=args.k
    )
    result.versions = versions
    result.startup_cpu_s = cpu_seconds()
    try:
        workloads[args.workload](args, result)
    except NotApplicable as exc:
        result.error = f"n/a: {exc}"
    except BaseException as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    result.cpu_s = cpu_seconds()
    result.peak_rss_mb = peak_rss_mb()
    sys.stdout.write(RESULT_PREFIX + json.dumps(asdict(result)) + "\n")
    sys.stdout.flush()


class NotApplicable(Exception):
    """This system cannot run this workload (the message says why)."""
