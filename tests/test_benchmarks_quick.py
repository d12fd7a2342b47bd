"""The benchmark suite runs end to end (the CI-sized variant; figures are never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_run_checks_every_result_and_exits_cleanly() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "W1" in run.stdout and "W5" in run.stdout


def test_drain_benchmark_completes_every_instance_it_started() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.drain", "--n", "20", "--workload", "W2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.startswith("W2 sqlite n=20: ")
