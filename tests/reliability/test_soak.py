"""The soak test, short: three worker processes, one SIGKILLed every two seconds or so.

The long run is a separate command (``python -m tests.reliability.soak``, see its docstring and
docs/reliability.md, "Soak"). Here each store gets about half a minute of kills, aimed at a
worker while it runs an activity, so every run interrupts real work, and then every
invariant of :mod:`tests.reliability.checks` must hold: each instance completed with its
output, each history whole and replaying on the workload's code, no activity ran after its
committed run, nothing left queued; no worker died on its own or failed to stop; and the
median interrupted activity ran again within the 10 s recovery target.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .soak import SoakConfig, SoakReport, run_soak
from .soak_figures import Kill, Spread, percentile, recovery, step_kind

pytestmark = pytest.mark.anyio

needs_sigkill = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


RECOVERY_TARGET = 10.0
"""Seconds the median interrupted activity may wait to run again: the issue's target (SQLite
with stable worker ids takes a quarter of a second, Cosmos about 3.5 s, most of it the
hand-over grace). The median, because a slot killed again before its replacement took over
restarts the wait, and a short run's maximum is mostly such chains."""
RECOVERY_BOUND = 30.0
"""Seconds any interrupted activity may wait to run again: catches a return to waiting for
long lock expiries (a minute), without failing on a machine other suites are loading."""


def assert_soak_held(report: SoakReport) -> None:
    print(report.text())
    findings = report.findings
    assert findings.clean, findings.summary()
    assert not report.problems, report.problems
    assert report.lost == 0
    assert report.kills >= 4, f"only {report.kills} kills"
    assert report.recovery.kills_interrupting >= 1, "no kill interrupted any work"
    assert report.recovery.activity, "no interrupted activity ran again"
    spread = Spread.of(report.recovery.activity)
    assert spread.p50 is not None and spread.p50 < RECOVERY_TARGET, spread
    assert max(report.recovery.activity) < RECOVERY_BOUND, spread
    assert report.recovery.abandoned_runs == 0


@pytest.mark.slow
@needs_sigkill
async def test_sqlite_soak_loses_and_repeats_nothing_committed(tmp_path: Path) -> None:
    config = SoakConfig(
        store="sqlite", minutes=0.4, rate=600, kill_every=2.0, aim=True, step_seconds=0.25,
        drain_timeout=60,
    )  # fmt: skip
    report = await run_soak(config, tmp_path)
    assert_soak_held(report)


@pytest.mark.slow
@needs_sigkill
async def test_cosmos_soak_under_throttling_loses_and_repeats_nothing_committed(
    tmp_path: Path,
    cosmos_server_url: str,
) -> None:
    config = SoakConfig(
        store="cosmos", minutes=0.5, rate=120, kill_every=2.0, aim=True, step_seconds=0.25,
        throttle=0.07, drain_timeout=60,
    )  # fmt: skip
    report = await run_soak(config, tmp_path, server_url=cosmos_server_url)
    assert_soak_held(report)
    assert report.throttled > 0


# -- the figures, from logs written by hand ------------------------------------------------------


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _run(run: str, key: str, attempt: int, pid: int, start: float) -> dict[str, Any]:
    return {"run": run, "key": key, "attempt": attempt, "pid": pid, "start_ns": int(start * 1e9)}


def _turn(key: str, pid: int, at: float) -> dict[str, Any]:
    return {"key": key, "pid": pid, "at_ns": int(at * 1e9)}


def test_recovery_samples_come_from_runs_and_turns_a_kill_interrupted(tmp_path: Path) -> None:
    kill = Kill("w0", pid=11, at_ns=10 * 10**9)
    runs = [
        # interrupted by the kill, run again 1.5 s after it: one sample
        _run("a1", "i/1/chain-0", 1, pid=11, start=9),
        _run("a2", "i/1/chain-0", 2, pid=12, start=11.5),
        # kept: not interrupted
        _run("b1", "i/1/chain-1", 1, pid=11, start=8),
        # a planned failure of the flaky step: never a sample
        _run("c1", "j/1/flaky", 1, pid=11, start=9),
        _run("c2", "j/1/flaky", 3, pid=12, start=12),
        # done twice, but by a process nobody killed: counted apart
        _run("d1", "k/1/fan-2", 1, pid=12, start=9),
        _run("d2", "k/1/fan-2", 2, pid=13, start=10),
    ]
    turns = [
        _turn("i/1/start", pid=11, at=9.9),  # never committed: reached again after the kill
        _turn("i/1/start", pid=12, at=10.25),
        _turn("i/1/after-chain-0", pid=12, at=12),
    ]
    events = [{"event": "ready", "slot": "w0", "pid": 14, "at_ns": int(10.5e9)}]
    kept = {"i/1/chain-0": "a2", "i/1/chain-1": "b1", "j/1/flaky": "c2", "k/1/fan-2": "d2"}

    result = recovery(
        [kill],
        _write(tmp_path / "runs.jsonl", runs),
        _write(tmp_path / "turns.jsonl", turns),
        _write(tmp_path / "events.jsonl", events),
        kept,
    )

    assert result.activity == [1.5]
    assert result.turn == [0.25]
    assert result.restart == [0.5]
    assert result.kills_interrupting == 1
    assert result.activity_reruns_without_kill == 1
    assert result.turn_reruns_without_kill == 0
    assert result.abandoned_runs == 0
    assert result.interrupted_steps == {"chain": 1}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert Spread.of([]).samples == 0
    assert step_kind("soak-00001-chain/1/chain-3") == "chain"
    assert step_kind("soak-00002-events/1/after-event") == "after-event"
