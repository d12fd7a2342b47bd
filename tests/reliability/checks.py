"""What must hold after the mixed workload ran through crashes and store faults.

* every instance completed with the output its seed calls for;
* every stored history is whole: event ids 1..n with no gap or duplicate, each scheduled
  activity completed or failed at most once;
* no activity ran again once its completion was committed: of all logged executions of one
  activity step, the one whose result the history kept started last (a later start means a
  run began while, or after, the kept one held the work);
* nothing is left in any queue;
* every stored history replays on the workload's code without a divergence
  (``duro.testing.replay``): what the crashed and restarted processes recorded is what the
  code, run again from the history alone, asks for.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

import duro
from duro.history import ActivityCompleted, ActivityFailed, ActivityScheduled, HistoryEvent
from duro.testing import replay

from . import workload
from .workload import Instance


@dataclass
class Run:
    run: str
    key: str
    start_ns: int
    worker: str


@dataclass
class Findings:
    """What the checks found; empty lists mean the run was clean."""

    wrong: list[str] = field(default_factory=list)
    broken_histories: list[str] = field(default_factory=list)
    reruns_after_commit: list[str] = field(default_factory=list)
    leftover_queues: str | None = None
    not_replaying: list[str] = field(default_factory=list)
    """Executions whose history the workload's code does not replay, with the error."""
    executions: int = 0
    """Activity executions logged."""
    duplicates: int = 0
    """Executions beyond one per activity step (crash re-runs, as designed: at least once)."""
    kept: dict[str, str] = field(default_factory=dict)
    """Activity step key -> id of the run whose result the history kept."""

    @property
    def clean(self) -> bool:
        return not (
            self.wrong
            or self.broken_histories
            or self.reruns_after_commit
            or self.leftover_queues
            or self.not_replaying
        )

    def summary(self) -> str:
        parts = [
            f"wrong outputs: {self.wrong[:5]}" if self.wrong else "",
            f"broken histories: {self.broken_histories[:5]}" if self.broken_histories else "",
            f"re-runs after commit: {self.reruns_after_commit[:5]}"
            if self.reruns_after_commit
            else "",
            f"left in queues: {self.leftover_queues}" if self.leftover_queues else "",
            f"not replaying: {self.not_replaying[:5]}" if self.not_replaying else "",
        ]
        return "; ".join(p for p in parts if p) or "clean"


def read_runs(paths: Iterable[Path]) -> dict[str, list[Run]]:
    """Logged executions by activity step key (``instance/execution/step``)."""
    runs: dict[str, list[Run]] = defaultdict(list)
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                runs[row["key"]].append(
                    Run(row["run"], row["key"], row["start_ns"], row.get("worker", "?"))
                )
    return runs


def _history_problems(
    instance_id: str, execution: int, events: Sequence[HistoryEvent]
) -> list[str]:
    problems: list[str] = []
    ids = [e.event_id for e in events]
    if ids != list(range(1, len(ids) + 1)):
        problems.append(f"{instance_id}#{execution}: event ids {ids[:12]}... are not 1..n")
    scheduled = Counter(e.seq for e in events if isinstance(e, ActivityScheduled))
    ended = Counter(e.seq for e in events if isinstance(e, ActivityCompleted | ActivityFailed))
    if any(n > 1 for n in scheduled.values()) or any(n > 1 for n in ended.values()):
        problems.append(f"{instance_id}#{execution}: an activity scheduled or ended twice")
    if set(ended) - set(scheduled):
        problems.append(f"{instance_id}#{execution}: a result for an activity never scheduled")
    return problems


def _kept_runs(events: Sequence[HistoryEvent]) -> dict[int, str]:
    """Activity seq -> id of the run whose result this history kept."""
    kept: dict[int, str] = {}
    for event in events:
        if isinstance(event, ActivityCompleted):
            result: Any = msgspec.json.decode(event.result)
            if isinstance(result, dict) and "run" in result:
                kept[event.seq] = result["run"]
    return kept


def _step_keys(events: Sequence[HistoryEvent]) -> dict[int, str]:
    keys: dict[int, str] = {}
    for event in events:
        if isinstance(event, ActivityScheduled):
            arg: Any = msgspec.json.decode(event.input)
            if isinstance(arg, dict) and "key" in arg:
                keys[event.seq] = arg["key"]
    return keys


async def check(
    client: duro.Client, instances: Sequence[Instance], run_logs: Iterable[Path]
) -> Findings:
    findings = Findings()
    runs = read_runs(run_logs)
    findings.executions = sum(len(r) for r in runs.values())
    ids = {instance.instance_id for instance in instances}
    all_ids = set(ids)
    for instance in instances:
        status = await client.get_status(instance.instance_id)
        if status.state is not duro.State.COMPLETED or status.output != instance.expected_output:
            findings.wrong.append(
                f"{instance.instance_id}: {status.state.name} {status.output!r} {status.error}"
                f" (expected {instance.expected_output})"
            )
        all_ids.update(await client.store.list_children(instance.instance_id))
    steps = 0
    for instance_id in sorted(all_ids):
        for execution in await client.store.list_executions(instance_id):
            events = await client.store.read_history(instance_id, execution)
            findings.broken_histories += _history_problems(instance_id, execution, events)
            findings.not_replaying += await _replay_problems(client, instance_id, execution)
            keys = _step_keys(events)
            for seq, run_id in _kept_runs(events).items():
                key = f"{instance_id}/{execution}/{keys.get(seq, '?')}"
                findings.kept[key] = run_id
                logged = runs.get(key, [])
                steps += 1
                kept = next((r for r in logged if r.run == run_id), None)
                if kept is None:
                    findings.reruns_after_commit.append(f"{key}: kept run {run_id} never logged")
                    continue
                later = [r for r in logged if r.start_ns > kept.start_ns]
                if later:
                    findings.reruns_after_commit.append(
                        f"{key}: {len(later)} run(s) started after the kept one "
                        f"({kept.worker} -> {[r.worker for r in later]})"
                    )
    findings.duplicates = max(0, findings.executions - steps - _failed_attempts(runs))
    depths = await client.queue_depths()
    if depths.orchestrator or depths.timers or depths.worker or depths.locked:
        findings.leftover_queues = repr(depths)
    return findings


async def _replay_problems(client: duro.Client, instance_id: str, execution: int) -> list[str]:
    exported = await client.export_history(instance_id, execution)
    try:
        replay(workload.registry, exported)
    except (duro.NondeterminismError, duro.UnregisteredError, duro.PayloadError) as exc:
        return [f"{instance_id}#{execution}: {type(exc).__name__}: {exc}"]
    return []


def _failed_attempts(runs: dict[str, list[Run]]) -> int:
    """Executions of the flaky step that failed on purpose (one per planned failure)."""
    from .workload import FLAKY_FAILURES

    return sum(FLAKY_FAILURES for key in runs if key.endswith("/flaky"))
