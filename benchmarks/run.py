"""duro's benchmark suite: W1-W5 on duro's stores and, side by side, on duroxide and DBOS.

    python -m benchmarks.run            # full run: every workload, provider and peer (~10 min)
    python -m benchmarks.run --quick    # CI-sized: small N, duro only, a few seconds
    python -m benchmarks.run --provider cosmos --peers none --workloads W1,W2,IDLE \
        --cosmos-partitions 1,30 --cosmos-runtimes 1,2   # Cosmos request and RU costs

Each (workload, system, config) repeat runs in a fresh subprocess with a fresh temporary
database, so peak RSS and CPU seconds are per run. Peers run from their own virtual
environments under ``benchmarks/.peers/`` (created here with pip on first use). Results print
as tables with ratios against each peer and issue 5's targets as PASS/FAIL lines; a full run
saves ``benchmarks/results/<timestamp>.json`` and a PNG chart beside it.

Cosmos cells run on the local test server behind the test suite's compat layer, which
estimates each request's charge in request units (RU) like Azure would. They report HTTP
requests and RU per orchestration, activity, turn and request kind, the share of lock writes
that failed with 412, and requests and RU per second of idle runtimes (the ``IDLE``
measurement, and a short idle window after each workload). ``--cosmos-partitions`` sets the
simulated physical partitions (a cross-partition query costs once per partition) and
``--cosmos-runtimes`` the runtime processes sharing the container (through one compat proxy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _report
from ._cosmos import config_name
from ._duro_workloads import MULTI_PROCESS_WORKLOADS, SQLITE_PROCESSES
from ._envs import BENCH_DIR, PEERS, REPO_ROOT, ensure_peer, ensure_tools
from ._protocol import (
    ALL_WORKLOADS,
    COSMOS_ONLY_WORKLOADS,
    DURO_ONLY_WORKLOADS,
    RESULT_PREFIX,
    WORKLOADS,
)

DURO_PROVIDERS = ("memory", "sqlite", "cosmos")
"""duro stores the suite knows. Cosmos runs once ``duro_cosmos.CosmosProvider`` exists."""

RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """One (system, config, workload) cell of the matrix, run ``repeats`` times."""

    system: str
    config: str
    workload: str
    python: str
    module: str
    repeats: int
    n: int | None = None
    k: int | None = None
    timeout: float = 300.0
    """Per-wait limit inside the run; the subprocess gets a little more."""


# Full-run sizes are issue 5's (see _protocol.DEFAULT_SIZES); these are the overrides.
QUICK_SIZES = {
    "W1": (20, 5),
    "W2": (20, 5),
    "W3": (5, None),
    "W4": (None, 200),
    "W5": (200, None),
    "W5X": (500, None),
    "W6": (300, 5),
    "IDLE": (2, None),
}
# Cosmos runs on the local Node test server behind a Python compat layer: a few orchestrations
# per second, so its cells are smaller (the point there is HTTP requests and estimated RU per
# step, which hardly depend on N) and run once. W1/W2 use the Cosmos production issue's
# measurement size: 60 orchestrations of 5 no-op activities. IDLE is seconds of no work.
COSMOS_SIZES = {
    "W1": (60, None),
    "W2": (60, None),
    "W3": (10, None),
    "W4": (None, 200),
    "W5": (200, None),
    "W5X": (1_000, None),
    "W6": (300, None),
    "IDLE": (10, None),
}
# W4 and W5 are long for the peers (duroxide replays the whole history every turn: W4 takes
# minutes), so they run once per config; W1-W3 take the median of `--repeats`.
SINGLE_RUN = ("W4", "W5", "W5X", "W6")
LONG_TIMEOUTS = {"W5X": 1200.0, "W6": 2400.0}
"""Per-wait limits of the backlog workloads at full size (100,000 instances)."""
PEER_LONG_CONFIG = {"duroxide": "poll10", "dbos": "async-tuned"}
"""W4/W5 run on one config per peer (its fastest in peers.md) to keep the full run short."""
PEER_SCALED = {
    ("dbos", "W5"): (
        1_000,
        "DBOS starts and wakes about 30 workflows/s on this machine (each "
        "start and send is its own SQLite write through a thread), so 10,000 would "
        "take about 10 minutes; per-instance figures are comparable",
    ),
}
"""Peer cells run smaller than issue 5's size, with the reason (kept in the results)."""


def cosmos_available() -> bool:
    try:
        import duro_cosmos
    except ImportError:
        return False
    server = REPO_ROOT / "tests" / "cosmos_server" / "node_modules" / "@vercel" / "cosmosdb-server"
    return hasattr(duro_cosmos, "CosmosProvider") and server.is_dir()


def duro_configs(args: argparse.Namespace, provider: str, workload: str) -> list[str]:
    """Configs of one duro provider: Cosmos has one per (partitions, runtimes) pair, SQLite
    adds its multi-process cells for the throughput workloads."""
    if provider == "sqlite" and workload in MULTI_PROCESS_WORKLOADS:
        return ["sqlite", *args.sqlite_processes]
    if provider != "cosmos":
        return [provider]
    return [
        config_name(partitions, runtimes)
        for partitions in args.cosmos_partitions
        for runtimes in args.cosmos_runtimes
    ]


def build_plan(args: argparse.Namespace) -> list[Spec]:
    plan: list[Spec] = []
    for workload in args.workloads:
        n, k = QUICK_SIZES[workload] if args.quick else (None, None)
        repeats = 1 if (args.quick or workload in SINGLE_RUN) else args.repeats
        for provider in args.providers:
            if workload in COSMOS_ONLY_WORKLOADS and provider != "cosmos":
                continue  # IDLE counts Cosmos requests; the other stores send none
            pn, pk, reps = n, k, repeats
            if provider == "cosmos" and not args.quick:
                pn, pk = COSMOS_SIZES[workload]
                reps = 1
            pn = args.sizes.get(workload, pn)
            for config in duro_configs(args, provider, workload):
                plan.append(
                    Spec(
                        system="duro",
                        config=config,
                        workload=workload,
                        python=sys.executable,
                        module="benchmarks._duro_workloads",
                        repeats=reps,
                        n=pn,
                        k=pk,
                        timeout=60.0 if args.quick else LONG_TIMEOUTS.get(workload, 300.0),
                    )
                )
    for workload in args.workloads:
        if workload in DURO_ONLY_WORKLOADS:
            continue
        for peer_name in args.peers:
            peer = PEERS[peer_name]
            configs = peer.configs
            if workload in SINGLE_RUN:
                configs = (PEER_LONG_CONFIG[peer_name],)
            repeats = 1 if workload in SINGLE_RUN else args.repeats
            n = args.sizes.get(workload) or (
                PEER_SCALED[(peer_name, workload)][0]
                if (peer_name, workload) in PEER_SCALED
                else None
            )
            for config in configs:
                plan.append(
                    Spec(
                        system=peer_name,
                        config=config,
                        workload=workload,
                        python=str(peer.python),
                        module=peer.module,
                        repeats=repeats,
                        n=n,
                    )
                )
    return plan


def schedule(plan: list[Spec]) -> list[tuple[Spec, int]]:
    """Round-robin the cells of a workload, repeat by repeat: every system sees the same
    machine conditions (other load on the box drifts over minutes), so ratios stay fair."""
    order: list[tuple[Spec, int]] = []
    for workload in dict.fromkeys(s.workload for s in plan):
        cells = [s for s in plan if s.workload == workload]
        for rep in range(1, max(s.repeats for s in cells) + 1):
            order += [(s, rep) for s in cells if s.repeats >= rep]
    return order


def run_one(spec: Spec, log_dir: Path) -> dict[str, Any]:
    db_dir = tempfile.mkdtemp(prefix=f"bench-{spec.system}-{spec.workload}-")
    cmd = [
        spec.python,
        "-m",
        spec.module,
        "--workload",
        spec.workload,
        "--config",
        spec.config,
        "--db-dir",
        db_dir,
        "--timeout",
        str(spec.timeout),
    ]
    if spec.n is not None:
        cmd += ["--n", str(spec.n)]
    if spec.k is not None:
        cmd += ["--k", str(spec.k)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=spec.timeout + 60
        )
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = f"killed after {spec.timeout + 60:.0f} s"
        rc = -9
    finally:
        shutil.rmtree(db_dir, ignore_errors=True)
    for line in reversed(stdout.splitlines()):
        if RESULT_PREFIX in line:
            result: dict[str, Any] = json.loads(line.split(RESULT_PREFIX, 1)[1])
            break
    else:
        result = {
            "system": spec.system,
            "config": spec.config,
            "workload": spec.workload,
            "n": spec.n or 0,
            "k": spec.k or 0,
            "failures": 0,
            "store_failures": 0,
            "checked": 0,
            "failure_samples": [],
            "extra": {},
            "error": f"no result (exit {rc}): {stderr.strip().splitlines()[-1:] or ''}",
        }
    if rc != 0 or result.get("error"):
        log = log_dir / f"{spec.system}-{spec.config}-{spec.workload}-{int(time.time() * 1000)}.log"
        log.write_text(
            f"$ {' '.join(cmd)}\n--- stdout\n{stdout[-20000:]}\n--- stderr\n{stderr[-20000:]}"
        )
        result.setdefault("log", str(log))
    return result


def _progress(i: int, total: int, spec: Spec, rep: int, r: dict[str, Any], seconds: float) -> str:
    cell = f"{spec.system}/{spec.config}"
    head = f"[{i:>3}/{total}] {spec.workload} {cell:<22} run {rep}/{spec.repeats}"
    if r.get("error"):
        return f"{head}  {r['error'][:100]}  ({seconds:.1f} s)"
    extra = r.get("extra", {})
    if spec.workload == "IDLE":
        figure = (
            f"idle {extra.get('idle_requests_per_s_per_runtime', 0):.1f} req/s, "
            f"{extra.get('idle_ru_per_s_per_runtime', 0):.1f} RU/s per runtime"
        )
    elif spec.workload == "W3":
        figure = f"p50 {r['p50_ms'] or 0:.1f} ms"
    elif spec.workload == "W4":
        figure = f"{r['act_per_s'] or 0:8.1f} act/s"
    else:
        figure = f"{r['orch_per_s'] or 0:8.1f} orch/s"
    if "ru_per_orchestration" in extra:
        figure += f", {extra['ru_per_orchestration']:.0f} RU/orch"
    return (
        f"{head}  {figure}  wall {r['wall_s'] or 0:6.2f} s  RSS {r['peak_rss_mb']:5.1f} MB  "
        f"failures {r['failures']}  ({seconds:.1f} s)"
    )


def machine_info() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "duro"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "git_commit": commit,
        "duro_tree_dirty": dirty,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="CI-sized: small N, duro only, 1 run each")
    p.add_argument(
        "--workloads",
        default=None,
        help="comma list, e.g. W1,W3 (default: W1-W5, plus IDLE when cosmos runs)",
    )
    p.add_argument(
        "--provider",
        action="append",
        choices=DURO_PROVIDERS,
        dest="providers",
        help="duro store (repeatable; default: memory and sqlite)",
    )
    p.add_argument("--peers", default=None, help="comma list of duroxide,dbos; 'none' for none")
    p.add_argument("--repeats", type=int, default=3, help="runs per W1-W3 cell; the median is kept")
    p.add_argument(
        "--cosmos-partitions",
        default="1",
        help="comma list of simulated physical partition counts for cosmos cells, e.g. 1,30",
    )
    p.add_argument(
        "--cosmos-runtimes",
        default="1",
        help="comma list of runtime process counts sharing the container, e.g. 1,2,4",
    )
    p.add_argument(
        "--sqlite-processes",
        default=",".join(SQLITE_PROCESSES),
        help="multi-process SQLite cells run beside 'sqlite' for W1, W2 and W6 "
        f"(comma list of {', '.join(SQLITE_PROCESSES)}; 'none' for none)",
    )
    p.add_argument(
        "--n",
        default="",
        metavar="W1=1000,...",
        help="orchestrations per workload for every system and config, instead of the "
        "default sizes (e.g. W1=1000,W2=1000: long enough for several processes to reach "
        "a steady state)",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG (needs matplotlib)")
    p.add_argument(
        "--save",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write results JSON + chart (default: yes, except with --quick)",
    )
    args = p.parse_args(argv)
    args.providers = args.providers or ["memory", "sqlite"]
    if args.workloads is None:
        default = [*WORKLOADS, *DURO_ONLY_WORKLOADS]
        if "cosmos" not in args.providers:
            default = [w for w in default if w not in COSMOS_ONLY_WORKLOADS]
        args.workloads = ",".join(default)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    if bad := [w for w in args.workloads if w not in ALL_WORKLOADS]:
        p.error(f"unknown workloads {bad}; choose from {', '.join(ALL_WORKLOADS)}")
    for name, low, high in (("cosmos_partitions", 1, 1000), ("cosmos_runtimes", 1, 8)):
        try:
            values = [int(x) for x in getattr(args, name).split(",") if x.strip()]
        except ValueError:
            p.error(f"--{name.replace('_', '-')}: expected a comma list of integers")
        if not values or any(not low <= v <= high for v in values):
            p.error(f"--{name.replace('_', '-')}: each value must be {low}..{high}")
        setattr(args, name, list(dict.fromkeys(values)))
    args.sizes = _sizes(p, args.n)
    cells = [x.strip() for x in args.sqlite_processes.split(",") if x.strip()]
    if cells == ["none"]:
        cells = []
    if bad := [x for x in cells if x not in SQLITE_PROCESSES]:
        p.error(f"unknown SQLite cells {bad}; choose from {', '.join(SQLITE_PROCESSES)}")
    args.sqlite_processes = cells
    if args.peers is None:
        args.peers = [] if args.quick else list(PEERS)
    elif args.peers.strip().lower() == "none":
        args.peers = []
    else:
        args.peers = [x.strip() for x in args.peers.split(",") if x.strip()]
        if bad := [x for x in args.peers if x not in PEERS]:
            p.error(f"unknown peers {bad}; choose from {', '.join(PEERS)}")
    if args.save is None:
        args.save = not args.quick
    return args


def _sizes(p: argparse.ArgumentParser, text: str) -> dict[str, int]:
    """``--n W1=1000,W2=1000`` as ``{"W1": 1000, "W2": 1000}``."""
    sizes: dict[str, int] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        workload, _, count = item.partition("=")
        workload = workload.strip().upper()
        if workload not in ALL_WORKLOADS or not count.strip().isdecimal() or int(count) < 1:
            p.error(f"--n: {item!r} is not WORKLOAD=COUNT (a workload of {ALL_WORKLOADS})")
        sizes[workload] = int(count)
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "cosmos" in args.providers and not cosmos_available():
        print(
            "duro provider 'cosmos': not yet available (needs duro_cosmos.CosmosProvider and "
            "the local test server: npm ci --prefix tests/cosmos_server); skipping it.",
            flush=True,
        )
        args.providers = [x for x in args.providers if x != "cosmos"]
        if not args.providers:
            return 2
    for peer in args.peers:
        ensure_peer(PEERS[peer])
    plan = build_plan(args)
    total = sum(s.repeats for s in plan)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = Path(tempfile.mkdtemp(prefix="duro-bench-logs-"))
    info = machine_info()
    print(
        f"duro benchmark: {total} runs, workloads {','.join(args.workloads)}, duro on "
        f"{'+'.join(args.providers)}, peers {','.join(args.peers) or 'none'}; "
        f"{info['cpus']} CPUs, load {info['load_avg_at_start'][0]:.2f}",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    for i, (spec, rep) in enumerate(schedule(plan), start=1):
        t = time.monotonic()
        result = run_one(spec, log_dir)
        result["repeat"] = rep
        runs.append(result)
        print(_progress(i, total, spec, rep, result, time.monotonic() - t), flush=True)
    elapsed = time.monotonic() - started
    agg = _report.aggregate(runs)
    targets = _report.check_targets(agg)
    print()
    print(_report.results_table(agg, args.workloads))
    ratios = _report.ratios_table(agg, args.workloads)
    if ratios:
        print()
        print(ratios)
    cosmos = _report.cosmos_tables(agg, runs)
    if cosmos:
        print()
        print(cosmos)
    print()
    print("Targets (issue 5; against a peer, duro is compared with that peer's best config):")
    for target in targets:
        print("  " + target.line())
    print(f"\n{len(runs)} runs in {elapsed:.0f} s.", flush=True)
    if args.save:
        save(args, info, runs, agg, targets, stamp, elapsed)
    bad = [r for r in runs if r["system"] == "duro" and (r.get("error") or r["failures"])]
    for r in bad:
        print(
            f"duro run failed: {r['workload']} {r['config']}: "
            f"{r.get('error') or r['failure_samples']}"
            f"{' (log: ' + r['log'] + ')' if r.get('log') else ''}",
            file=sys.stderr,
        )
    return 1 if bad else 0


def save(
    args: argparse.Namespace,
    info: dict[str, Any],
    runs: list[dict[str, Any]],
    agg: dict[tuple[str, str, str], dict[str, Any]],
    targets: list[_report.Target],
    stamp: str,
    elapsed: float,
) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{stamp}.json"
    doc = {
        "created": stamp,
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
        "machine": info,
        "elapsed_s": elapsed,
        "options": {
            "quick": args.quick,
            "workloads": args.workloads,
            "providers": args.providers,
            "peers": args.peers,
            "repeats": args.repeats,
            "cosmos_partitions": args.cosmos_partitions,
            "cosmos_runtimes": args.cosmos_runtimes,
            "sqlite_processes": args.sqlite_processes,
            "sizes": args.sizes,
        },
        "scaled_peer_cells": {
            f"{s}/{w}": {"n": n, "reason": why}
            for (s, w), (n, why) in PEER_SCALED.items()
            if s in args.peers
        },
        "summary": list(agg.values()),
        "targets": [{"name": t.name, "status": t.status, "detail": t.detail} for t in targets],
        "runs": runs,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"saved {path.relative_to(REPO_ROOT)}", flush=True)
    if args.no_chart:
        return
    try:
        python = ensure_tools()
        subprocess.run(
            [str(python), "-m", "benchmarks._chart", str(path), str(path.with_suffix(".png"))],
            cwd=REPO_ROOT,
            check=True,
        )
        print(f"saved {path.with_suffix('.png').relative_to(REPO_ROOT)}", flush=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"chart skipped: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
