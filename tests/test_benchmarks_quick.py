"""The benchmark suite runs end to end (the CI-sized variant; figures are never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root, which must exit cleanly."""
    run = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_quick_benchmark_run_checks_every_result_and_exits_cleanly() -> None:
    run = _benchmark("benchmarks.run", "--quick")
    assert "W1" in run.stdout and "W5" in run.stdout
    # Issue 16's workloads and multi-process cells run in the quick variant too.
    cells = ("W5X", "W6", "duro/sqlite-x2", "duro/sqlite-w2", "duro/sqlite-split")
    for cell in (*cells, "after deleting 300"):
        assert cell in run.stdout, cell


def test_gc_pause_benchmark_compares_both_settings() -> None:
    run = _benchmark("benchmarks.gc_pauses", "--n", "40", "--repeats", "1")
    assert "tune_gc=off" in run.stdout and "tune_gc=on" in run.stdout


def test_overload_benchmark_drains_a_burst_beside_waiting_instances() -> None:
    run = _benchmark(
        "benchmarks.overload", "--waiting", "100", "--starts", "200", "--probe-every", "0.1"
    )
    assert "burst_timer_lateness_max_s" in run.stdout


def test_drain_benchmark_completes_every_instance_it_started() -> None:
    run = _benchmark("benchmarks.drain", "--n", "20", "--workload", "W2")
    assert run.stdout.startswith("W2 sqlite n=20: ")


def test_idle_benchmark_reports_cpu_and_pick_up_of_a_runtime_process() -> None:
    run = _benchmark("benchmarks.idle", "--seconds", "1", "--starts", "2", "--back-to-back", "3")
    assert (
        "% of a core" in run.stdout and "pick-up of a start from another process, 2" in run.stdout
    )
    assert "wait_for_orchestration returned after the completion, 2 waits" in run.stdout
    assert "start and wait back to back, 3 workflows" in run.stdout


def test_idle_benchmark_can_start_from_a_process_that_runs_a_runtime_too() -> None:
    run = _benchmark(
        "benchmarks.idle", "--seconds", "1", "--starts", "2", "--back-to-back", "3",
        "--runtime-here",
    )  # fmt: skip
    assert "start and wait back to back, 3 workflows" in run.stdout


def test_quick_cosmos_cells_report_request_units_across_runtimes_and_partitions() -> None:
    run = _benchmark(
        "benchmarks.run", "--quick", "--provider", "cosmos", "--peers", "none",
        "--workloads", "W1,IDLE", "--cosmos-partitions", "3", "--cosmos-runtimes", "2",
    )  # fmt: skip
    rows = {
        line.split()[0]: line.split()
        for line in run.stdout.splitlines()
        if line.split()[1:2] == ["cosmos-p3-r2"] and line.split()[2:4] == ["3", "2"]
    }
    # workload, config, P, runtimes, req/orch, RU/orch, RU/activity, RU/turn, 412 share ...
    w1, idle = rows["W1"], rows["IDLE"]
    assert float(w1[5]) > float(w1[4]) > 5  # every orchestration costs requests and more RU
    # Idle runtimes heartbeat (upserts) and read the membership partition (a query of at
    # least 2.5 RU): every request costs at least 1 RU, and the kinds are itemised.
    idle_requests, idle_ru = float(idle[-2]), float(idle[-1])
    assert idle_requests > 0 and idle_ru >= idle_requests
    assert "upsert" in run.stdout and "partition_query" in run.stdout


def test_failover_benchmark_reports_both_ways_a_runtime_goes() -> None:
    run = _benchmark("benchmarks.failover", "--instances", "2")
    lines = run.stdout.splitlines()
    for case in ("sigkill", "exit"):
        assert any(line.startswith(case) and "served p50" in line for line in lines), run.stdout


def test_a_size_given_on_the_command_line_applies_to_every_system_of_that_workload() -> None:
    from benchmarks.run import build_plan, parse_args

    args = parse_args(["--workloads", "W1,W2", "--provider", "sqlite", "--n", "w1=1000"])
    plan = build_plan(args)
    assert {s.system for s in plan} == {"duro", "duroxide", "dbos"}
    assert {s.n for s in plan if s.workload == "W1"} == {1000}
    assert 1000 not in {s.n for s in plan if s.workload == "W2"}


def test_a_malformed_size_is_refused_naming_the_item(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.run import parse_args

    for bad in ("W9=10", "W1=ten", "W1=0", "W1"):
        with pytest.raises(SystemExit):
            parse_args(["--n", bad])
        assert f"--n: {bad!r}" in capsys.readouterr().err
