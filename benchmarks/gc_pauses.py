"""Garbage-collection pauses during a drain, with and without ``RuntimeOptions.tune_gc``.

    python -m benchmarks.gc_pauses [--n 2000] [--k 5] [--repeats 2] [--json PATH]

W2's shape (``--n`` chains of ``--k`` activities on one SQLite file), started as a backlog
and drained, once per setting and repeat, alternating so both see the same machine load.
Each run is its own process (collector state and thresholds are per process). Reported per
setting: collections by generation, total and longest pause, and the drain's wall time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import duro

from ._duro_workloads import chain, registry


async def _drain(n: int, k: int, tune_gc: bool) -> dict[str, Any]:
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append((time.perf_counter() - began[0]) * 1000)

    with tempfile.TemporaryDirectory(prefix="duro-gc-") as tmp:
        store = duro.SqliteProvider(os.path.join(tmp, "gc.db"))
        options = duro.RuntimeOptions(tune_gc=tune_gc)
        async with store, duro.Runtime(store, registry, options):
            client = duro.Client(store, registry=registry)
            gc.callbacks.append(on_gc)
            started = time.perf_counter()
            for i in range(n):
                await client.start_orchestration(f"c-{i}", chain, [i, k])
            for i in range(n):
                await client.wait_for_orchestration(f"c-{i}", timeout=600)
            wall = time.perf_counter() - started
            gc.callbacks.remove(on_gc)
    every = [p for ps in pauses.values() for p in ps]
    return {
        "collections": {f"gen{g}": len(ps) for g, ps in pauses.items()},
        "pause_total_ms": round(sum(every), 1),
        "pause_max_ms": round(max(every, default=0.0), 1),
        "full_collection_ms": [round(p, 1) for p in pauses[2]],
        "wall_s": round(wall, 2),
    }


def _child(args: argparse.Namespace) -> None:
    print(json.dumps(anyio.run(_drain, args.n, args.k, args.tune_gc == "on")))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gc_pauses")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also save the figures here")
    parser.add_argument("--tune-gc", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tune_gc:
        _child(args)
        return
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for setting in runs:
            cmd = [sys.executable, "-m", "benchmarks.gc_pauses", "--n", str(args.n)]
            cmd += ["--k", str(args.k), "--tune-gc", setting]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[setting].append(json.loads(out.strip().splitlines()[-1]))
    summary: dict[str, Any] = {"n": args.n, "k": args.k, "runs": runs}
    for setting, results in runs.items():
        summary[setting] = {
            "pause_total_ms": statistics.median(r["pause_total_ms"] for r in results),
            "pause_max_ms": max(r["pause_max_ms"] for r in results),
            "full_collections": sum(r["collections"]["gen2"] for r in results),
            "wall_s": statistics.median(r["wall_s"] for r in results),
        }
        print(f"tune_gc={setting:3s} {summary[setting]}")
    off, on = summary["off"], summary["on"]
    print(f"wall off/on {off['wall_s'] / on['wall_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
