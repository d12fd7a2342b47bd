"""Profile one duro workload under py-spy and print its hotspots.

    python -m benchmarks.profile                     # W1 and W2 on SQLite, n=2000
    python -m benchmarks.profile --workload W4 --provider memory

py-spy (installed into the benchmark-only ``benchmarks/.venv-tools``) samples the workload's
process from outside at up to 200 Hz without pausing it (``--nonblocking``). Parked threads and
start-up imports are left out; the rest is folded by function (line numbers dropped): "self"
is where the CPU was, "inclusive" is everything under a function. The report is printed and
saved to ``benchmarks/results/profile-<workload>-<provider>.txt``.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

from ._envs import BENCH_DIR, REPO_ROOT, TOOLS_VENV, ensure_tools

# Leaf frames of a thread that is parked, not working: py-spy's idle detection does not always
# drop them (anyio's worker threads waiting for a job show up as Condition.wait).
_IDLE_LEAVES = (
    "Condition.wait (",
    "EpollSelector.select (",
    "Event.wait (",
    "Queue.get (",
    "_wait_for_tstate_lock (",
    "SimpleQueue.get (",
)
_STDLIB_MARKERS = (
    "<frozen",
    "asyncio/",
    "anyio/",
    "threading.py",
    "concurrent/",
    "selectors.py",
    "runpy",
    "benchmarks/",
)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "func (path/file.py:123)"; fold the line number away.
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({path})"


def fold(raw: str) -> tuple[int, collections.Counter[str], collections.Counter[str], int, int]:
    total = 0
    idle = 0
    startup = 0
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += count
            continue
        if any(f.startswith("<module> (") and "benchmarks/" not in f for f in frames):
            startup += count  # importing duro and its dependencies, not the hot path
            continue
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, self_time, inclusive, idle, startup


def _bucket(path: str) -> str:
    for marker, bucket in (
        ("asyncio/", "asyncio"),
        ("anyio/", "anyio"),
        ("<frozen", "imports"),
        ("importlib", "imports"),
        ("opentelemetry", "opentelemetry"),
        ("msgspec", "msgspec"),
        ("threading.py", "threading"),
        ("sqlite3", "sqlite3"),
    ):
        if marker in path:
            return f"[{bucket}]"
    return "[other stdlib]"


def report(workload: str, provider: str, raw: str, top: int) -> str:
    total, self_time, inclusive, idle, startup = fold(raw)
    lines = [
        f"py-spy profile: duro {workload} on {provider}: {total} working samples at 200 Hz; "
        f"left out: {idle} of parked threads, {startup} of start-up imports. Percentages are "
        "of the working samples.",
        "",
        f"Top {top} by self time:",
    ]
    for name, count in self_time.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    by_module: collections.Counter[str] = collections.Counter()
    for name, count in self_time.items():
        module = name.rpartition(" (")[2].rstrip(")")
        by_module[module if "duro/" in module else _bucket(module)] += count
    lines += ["", "Self time by module (duro files; everything else bucketed):"]
    for module, count in by_module.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {module}")
    lines += ["", f"Top {top} duro functions by inclusive time:"]
    duro_only = [
        (n, c)
        for n, c in inclusive.most_common()
        if "duro/" in n and not any(m in n for m in _STDLIB_MARKERS)
    ]
    for name, count in duro_only[:top]:
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workload", action="append", help="default: W1 and W2")
    p.add_argument("--provider", default="sqlite")
    p.add_argument("--top", type=int, default=15)
    p.add_argument(
        "--n",
        type=int,
        default=2000,
        help="orchestrations (default 2000: 10x issue 5's W1/W2, so start-up and "
        "imports do not dominate the samples)",
    )
    args = p.parse_args(argv)
    ensure_tools()
    py_spy = TOOLS_VENV / "bin" / "py-spy"
    for workload in args.workload or ["W1", "W2"]:
        with tempfile.TemporaryDirectory() as tmp:
            raw_path = Path(tmp) / "raw.txt"
            proc = subprocess.run(
                [
                    str(py_spy),
                    "record",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--output",
                    str(raw_path),
                    "--",
                    sys.executable,
                    "-m",
                    "benchmarks._duro_workloads",
                    "--workload",
                    workload,
                    "--config",
                    args.provider,
                    "--db-dir",
                    tmp,
                    "--n",
                    str(args.n),
                ],
                cwd=REPO_ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            if '"error": null' not in proc.stdout or '"failures": 0' not in proc.stdout:
                print(f"warning: the profiled run did not complete cleanly:\n{proc.stdout[-2000:]}")
            text = report(workload, args.provider, raw_path.read_text(), args.top)
            text = f"(n={args.n})\n" + text
        out = BENCH_DIR / "results" / f"profile-{workload}-{args.provider}.txt"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text + "\n")
        print(text + f"\n(saved {out.relative_to(REPO_ROOT)})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
