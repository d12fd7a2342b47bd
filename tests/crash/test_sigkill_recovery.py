"""Durability of ``SqliteProvider`` under SIGKILL, with real child processes.

A child process (``tests/crash/worker.py``) runs a ``duro.Runtime`` on a SQLite file with a
workload of 30 orchestrations (a chain of activities, a fan-out, a durable timer, a final
activity). The parent kills it with SIGKILL once the activity log shows partial progress,
copies the database file and its WAL (what was committed at the moment of the kill), and
starts a fresh child on the same file, which must finish every orchestration.

The kill point varies from run to run; every assertion holds for any kill point:

* every orchestration completes with the right output, each step scheduled and completed
  exactly once in its history;
* what was committed before a kill is still there afterwards (each snapshot's history is a
  prefix of the final one; committed completions are never lost);
* an activity whose completion was committed before a kill never runs again: no log line of
  a later run names a step that the snapshot taken at the kill shows as completed;
* without a crash nothing runs twice (at most one execution per step per run), every
  committed completion was preceded by its execution, and a re-delivered activity sees a
  higher attempt number than the execution the kill interrupted;
* a turn commit and an activity completion are atomic on disk: in each snapshot every
  scheduled step is either still queued for a worker or has its result committed (in history
  or waiting in the orchestrator queue), never both and never neither.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec
import pytest

import duro
from duro.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    HistoryEvent,
    encode_event,
)
from duro.providers import ActivityResultMessage, decode_message

from . import worker
from .worker import STEPS, expected_output, instance_ids, seed_of, start_workload

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOTAL_STEPS = worker.N_INSTANCES * len(STEPS)
LOCK_TIMEOUT = 1.0
PROGRESS_TIMEOUT = 20.0
FINISH_TIMEOUT = 30.0
POLL = 0.005

Step = tuple[str, str]
"""(instance id, activity step name)."""


@dataclass(frozen=True)
class Execution:
    """One line of the activity log: one execution of one step."""

    run: str
    instance_id: str
    step: str
    attempt: int


@dataclass
class StoreState:
    """What one database file holds, as the crash checks need it."""

    label: str
    states: dict[str, duro.State] = field(default_factory=dict)
    outputs: dict[str, object] = field(default_factory=dict)
    histories: dict[str, list[HistoryEvent]] = field(default_factory=dict)
    scheduled: set[Step] = field(default_factory=set)
    completed_in_history: Counter[Step] = field(default_factory=Counter)
    results_queued: Counter[Step] = field(default_factory=Counter)
    queued_for_worker: Counter[Step] = field(default_factory=Counter)
    failed: list[Step] = field(default_factory=list)

    @property
    def committed(self) -> set[Step]:
        """Steps whose activity completion was committed (consumed or not by a turn)."""
        return set(self.completed_in_history) | set(self.results_queued)


# -- the child process ------------------------------------------------------------------------


class Child:
    def __init__(self, harness: Harness, run: str) -> None:
        self.run = run
        self.out_path = harness.dir / f"{run}.out"
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.crash.worker",
                    "--db",
                    str(harness.db),
                    "--log",
                    str(harness.log),
                    "--run",
                    run,
                    "--lock-timeout",
                    str(LOCK_TIMEOUT),
                    "--timeout",
                    str(FINISH_TIMEOUT),
                ],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")[-4000:]


class Harness:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.db = directory / "crash.db"
        self.log = directory / "activities.log"
        self.children: list[Child] = []

    def launch(self, run: str) -> Child:
        child = Child(self, run)
        self.children.append(child)
        return child

    def executions(self) -> list[Execution]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        result = []
        for line in lines:
            run, instance_id, step, attempt = line.split(",")
            result.append(Execution(run, instance_id, step, int(attempt)))
        return result

    def wait_for_progress(self, child: Child, lines: int) -> int:
        """Poll the log until ``child`` logged ``lines`` executions; fail if it exits first."""
        deadline = time.monotonic() + PROGRESS_TIMEOUT
        while True:
            done = sum(1 for e in self.executions() if e.run == child.run)
            if done >= lines:
                return done
            if child.proc.poll() is not None:
                pytest.fail(
                    f"run {child.run} exited ({child.proc.returncode}) after logging {done} "
                    f"executions, before the kill point ({lines}):\n{child.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"run {child.run} logged only {done}/{lines} executions in time")
            time.sleep(POLL)

    def kill(self, child: Child) -> None:
        os.kill(child.proc.pid, signal.SIGKILL)
        returncode = child.proc.wait(timeout=10)
        assert returncode == -signal.SIGKILL, f"run {child.run} was not killed: {returncode}"
        with pytest.raises(ProcessLookupError):
            os.kill(child.proc.pid, 0)  # dead and reaped

    def snapshot(self, label: str) -> Path:
        """Copy the file and its WAL as the kill left them: exactly what was committed."""
        target = self.dir / f"snapshot-{label}"
        target.mkdir()
        copy = target / self.db.name
        shutil.copy2(self.db, copy)
        wal = Path(f"{self.db}-wal")
        if wal.exists():
            shutil.copy2(wal, Path(f"{copy}-wal"))
        # No -shm: SQLite rebuilds the WAL index from the WAL itself.
        return copy

    def finish(self, child: Child) -> None:
        try:
            returncode = child.proc.wait(timeout=FINISH_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
            pytest.fail(f"run {child.run} did not finish:\n{child.output()}")
        assert returncode == 0, f"run {child.run} failed ({returncode}):\n{child.output()}"

    def cleanup(self) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    anyio.run(start_workload, str(h.db))
    try:
        yield h
    finally:
        h.cleanup()


# -- reading a database file ------------------------------------------------------------------


def _step_of(event: ActivityScheduled) -> str:
    step: str = msgspec.json.decode(event.input)["step"]
    return step


def read_state(path: Path, label: str) -> StoreState:
    state = StoreState(label)
    seq_steps: dict[tuple[str, int, int], str] = {}

    async def read_provider() -> None:
        async with duro.SqliteProvider(path) as store:
            client = duro.Client(store)
            for instance_id in instance_ids():
                status = await client.get_status(instance_id)
                state.states[instance_id] = status.state
                if status.state is duro.State.COMPLETED:
                    state.outputs[instance_id] = status.output
                history = await client.get_history(instance_id)
                state.histories[instance_id] = history
                execution_id = status.execution_id or 0
                for event in history:
                    if isinstance(event, ActivityScheduled):
                        step = _step_of(event)
                        assert (instance_id, step) not in state.scheduled, (
                            f"{label}: {instance_id} scheduled {step} twice"
                        )
                        state.scheduled.add((instance_id, step))
                        seq_steps[instance_id, execution_id, event.seq] = step
                for event in history:
                    if isinstance(event, ActivityCompleted | ActivityFailed):
                        step = seq_steps[instance_id, execution_id, event.seq]
                        state.completed_in_history[instance_id, step] += 1
                        if isinstance(event, ActivityFailed):
                            state.failed.append((instance_id, step))

    anyio.run(read_provider)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        for instance_id, execution_id, seq in conn.execute(
            "SELECT instance_id, execution_id, seq FROM worker_queue"
        ):
            state.queued_for_worker[instance_id, seq_steps[instance_id, execution_id, seq]] += 1
        for (data,) in conn.execute(
            "SELECT data FROM orchestrator_queue WHERE kind = 'ActivityResultMessage'"
        ):
            message = decode_message(data)
            assert isinstance(message, ActivityResultMessage)
            key = (message.instance_id, message.execution_id, message.seq)
            state.results_queued[message.instance_id, seq_steps[key]] += 1
    return state


# -- the checks -------------------------------------------------------------------------------


def check_snapshot_consistency(state: StoreState) -> None:
    """Each scheduled step is queued for a worker xor has its result committed, once."""
    label = state.label
    assert not state.failed, f"{label}: activities failed: {state.failed}"
    for key, count in (
        state.completed_in_history + state.results_queued + state.queued_for_worker
    ).items():
        assert count == 1, (
            f"{label}: {key} appears {count} times among history completions "
            f"({state.completed_in_history[key]}), queued results "
            f"({state.results_queued[key]}) and worker items ({state.queued_for_worker[key]})"
        )
    in_flight = set(state.queued_for_worker)
    assert state.scheduled == state.committed | in_flight, (
        f"{label}: scheduled steps with neither a worker item nor a result: "
        f"{sorted(state.scheduled - state.committed - in_flight)}; results or items without "
        f"a scheduled step: {sorted((state.committed | in_flight) - state.scheduled)}"
    )


def check_final(state: StoreState) -> None:
    check_snapshot_consistency(state)
    for instance_id in instance_ids():
        assert state.states[instance_id] is duro.State.COMPLETED, (
            f"{instance_id} ended {state.states[instance_id]}"
        )
        assert state.outputs[instance_id] == expected_output(seed_of(instance_id)), instance_id
    everything = {(i, s) for i in instance_ids() for s in STEPS}
    assert state.scheduled == everything
    assert set(state.completed_in_history) == everything
    assert not state.results_queued and not state.queued_for_worker


def check_recovery(
    runs: list[str], snapshots: list[StoreState], final: StoreState, executions: list[Execution]
) -> dict[str, int]:
    """All the crash invariants; ``snapshots[k]`` was taken when ``runs[k]`` was killed."""
    assert len(snapshots) == len(runs) - 1
    check_final(final)
    for snap in snapshots:
        check_snapshot_consistency(snap)

    # Durability: committed history never changes or disappears; completions are never lost.
    for snap in snapshots:
        for instance_id, history in snap.histories.items():
            after = [encode_event(e) for e in final.histories[instance_id]]
            before = [encode_event(e) for e in history]
            assert after[: len(before)] == before, (
                f"{instance_id}: history committed before the kill of {snap.label} changed"
            )
    for earlier, later in itertools.pairwise(snapshots):
        lost = earlier.committed - later.committed
        assert not lost, f"completions committed before {earlier.label} were lost: {lost}"

    by_run: dict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        assert e.run in runs, f"unexpected log line {e}"
        by_run[e.run].append(e)

    # Without a crash, nothing runs twice.
    for run in runs:
        counts = Counter((e.instance_id, e.step) for e in by_run[run])
        twice = [key for key, n in counts.items() if n > 1]
        assert not twice, f"run {run} executed these steps more than once: {twice}"

    # The heart of it: a step whose completion was committed before a kill never runs again.
    for k, run in enumerate(runs[1:]):
        committed = snapshots[k].committed
        again = [e for e in by_run[run] if (e.instance_id, e.step) in committed]
        assert not again, (
            f"run {run} re-executed activities whose completion was committed before the kill "
            f"of run {runs[k]}: {again}"
        )

    # Every committed completion was preceded by its execution (the log is written first).
    for k, snap in enumerate(snapshots):
        logged = {(e.instance_id, e.step) for r in runs[: k + 1] for e in by_run[r]}
        unlogged = snap.committed - logged
        assert not unlogged, f"{snap.label}: completions committed without an execution: {unlogged}"
    assert {(e.instance_id, e.step) for e in executions} == set(final.completed_in_history)

    # A redelivery counts: the attempt number grows across crashes.
    attempts: dict[Step, list[int]] = defaultdict(list)
    for run in runs:
        for e in by_run[run]:
            attempts[e.instance_id, e.step].append(e.attempt)
    for key, seen in attempts.items():
        assert seen[0] >= 1 and seen == sorted(set(seen)), f"{key}: attempts {seen}"

    reexecuted = sum(1 for seen in attempts.values() if len(seen) > 1)
    return {"executions": len(executions), "reexecuted_steps": reexecuted}


def assert_killed_mid_workload(snapshot: StoreState) -> None:
    """Not vacuous: the kill found work both committed and outstanding."""
    assert snapshot.committed, f"{snapshot.label}: no completion was committed before the kill"
    assert any(s is not duro.State.COMPLETED for s in snapshot.states.values()), (
        f"{snapshot.label}: every orchestration had completed before the kill"
    )


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("kill_after", [20, 150], ids=["early", "late"])
def test_sigkill_mid_workload_then_restart_completes_without_rerunning_committed_work(
    harness: Harness, kill_after: int
) -> None:
    first = harness.launch("r1")
    harness.wait_for_progress(first, kill_after)
    harness.kill(first)
    at_kill = read_state(harness.snapshot("r1"), "kill of r1")
    assert_killed_mid_workload(at_kill)

    second = harness.launch("r2")
    harness.finish(second)
    final = read_state(harness.db, "final")

    stats = check_recovery(["r1", "r2"], [at_kill], final, harness.executions())
    print(f"kill after {kill_after}/{TOTAL_STEPS} logged executions: {stats}")


def test_sigkill_twice_including_during_recovery(harness: Harness) -> None:
    first = harness.launch("r1")
    harness.wait_for_progress(first, 60)
    harness.kill(first)
    first_kill = read_state(harness.snapshot("r1"), "kill of r1")
    assert_killed_mid_workload(first_kill)

    # The recovering run must first wait for the dead run's locks to expire; kill it once it
    # has re-executed or continued some of the work.
    second = harness.launch("r2")
    harness.wait_for_progress(second, 40)
    harness.kill(second)
    second_kill = read_state(harness.snapshot("r2"), "kill of r2")
    assert_killed_mid_workload(second_kill)
    assert len(second_kill.committed) > len(first_kill.committed), "r2 made no progress"

    third = harness.launch("r3")
    harness.finish(third)
    final = read_state(harness.db, "final")

    stats = check_recovery(
        ["r1", "r2", "r3"], [first_kill, second_kill], final, harness.executions()
    )
    print(f"two kills: {stats}")
