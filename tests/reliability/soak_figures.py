"""The figures of a soak run, read from its logs: what each kill interrupted and how long the
interrupted work waited before it ran again.

* **Activity recovery**: an activity run that started in a process later killed, and whose
  result no history kept, was interrupted by that kill; the sample is the time from the kill
  to the start of the next run of the same step (anywhere). Runs of the flaky activity that
  fail on purpose are left out: they were never going to be kept.
* **Turn recovery**: orchestration code that reached a point live in a process later killed,
  and reached it live again afterwards in another process, ran in a turn the kill stopped
  before its commit; the sample is the time from the kill to the second arrival. Turns that
  record a result without moving the code on (one of a fan-out's results) do not show.
* **Restart**: from a kill to the replacement process's runtime reporting ready.

Work done twice *without* a kill behind it (a lock lost to a stall, a commit that failed) is
counted apart: with locks renewed in the background it should not happen at all.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .workload import FLAKY_FAILURES


@dataclass(frozen=True)
class Kill:
    slot: str
    pid: int
    at_ns: int


@dataclass(frozen=True)
class Spread:
    """Seconds: how many samples, their median, 99th percentile and maximum."""

    samples: int
    p50: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0, None, None, None)
        ordered = sorted(values)
        return cls(
            len(ordered),
            round(percentile(ordered, 50), 3),
            round(percentile(ordered, 99), 3),
            round(ordered[-1], 3),
        )

    def __str__(self) -> str:
        if not self.samples:
            return "no samples"
        return f"p50 {self.p50:.2f} s, p99 {self.p99:.2f} s, max {self.max:.2f} s ({self.samples})"


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` % of the samples at or below it."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Recovery:
    activity: list[float] = field(default_factory=list)
    """Seconds from a kill to the next start of each activity run it interrupted."""
    turn: list[float] = field(default_factory=list)
    """Seconds from a kill to the re-run of each turn it interrupted (that moved the code on)."""
    restart: list[float] = field(default_factory=list)
    """Seconds from a kill to the replacement's runtime being ready."""
    kills_interrupting: int = 0
    """Kills that interrupted at least one activity run or turn."""
    activity_reruns_without_kill: int = 0
    turn_reruns_without_kill: int = 0
    abandoned_runs: int = 0
    """Runs not kept and never run again (the checks report what that means)."""
    interrupted_steps: Counter[str] = field(default_factory=Counter)
    """Interrupted activity runs by kind of step (``chain``, ``fan``, ``session``...)."""

    def summary(self) -> dict[str, Any]:
        return {
            "activity": asdict(Spread.of(self.activity)),
            "turn": asdict(Spread.of(self.turn)),
            "restart": asdict(Spread.of(self.restart)),
            "kills_interrupting": self.kills_interrupting,
            "activity_reruns_without_kill": self.activity_reruns_without_kill,
            "turn_reruns_without_kill": self.turn_reruns_without_kill,
            "abandoned_runs": self.abandoned_runs,
            "interrupted_steps": dict(sorted(self.interrupted_steps.items())),
        }


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _planned_failure(row: Mapping[str, Any]) -> bool:
    return str(row["key"]).endswith("/flaky") and int(row["attempt"]) <= FLAKY_FAILURES


def recovery(
    kills: Sequence[Kill],
    run_log: Path,
    turn_log: Path,
    events: Path,
    kept: Mapping[str, str],
) -> Recovery:
    """Read the run, turn and event logs of a soak run; ``kept``: step key -> kept run id."""
    killed = {kill.pid: kill for kill in kills}
    result = Recovery()
    interrupting: set[int] = set()

    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _lines(run_log):
        runs[row["key"]].append(row)
    for key, rows in runs.items():
        rows.sort(key=lambda r: r["start_ns"])
        for i, row in enumerate(rows):
            if row["run"] == kept.get(key) or _planned_failure(row):
                continue
            later = rows[i + 1 :]
            if not later:
                result.abandoned_runs += 1
                continue
            kill = killed.get(row["pid"])
            if kill is None or later[0]["start_ns"] < kill.at_ns:
                result.activity_reruns_without_kill += 1
                continue
            result.activity.append((later[0]["start_ns"] - kill.at_ns) / 1e9)
            result.interrupted_steps[step_kind(key)] += 1
            interrupting.add(kill.pid)

    turns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _lines(turn_log):
        turns[row["key"]].append(row)
    for rows in turns.values():
        rows.sort(key=lambda r: r["at_ns"])
        for first, again in itertools.pairwise(rows):
            kill = killed.get(first["pid"])
            if kill is None or again["at_ns"] < kill.at_ns:
                result.turn_reruns_without_kill += 1
                continue
            result.turn.append((again["at_ns"] - kill.at_ns) / 1e9)
            interrupting.add(kill.pid)

    result.restart = restart_times(kills, _lines(events))
    result.kills_interrupting = len(interrupting)
    return result


def step_kind(key: str) -> str:
    """``chain`` for ``soak-00001-chain/1/chain-3``: the step's name without its number."""
    name = key.rsplit("/", 1)[-1]
    stem, _, number = name.rpartition("-")
    return stem if stem and number.isdigit() else name


def restart_times(kills: Iterable[Kill], events: Sequence[Mapping[str, Any]]) -> list[float]:
    """For each kill, seconds until the next ``ready`` of a process in the same slot."""
    ready: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event["event"] == "ready":
            ready[event["slot"]].append(event["at_ns"])
    times = []
    for kill in kills:
        after = [at for at in ready[kill.slot] if at >= kill.at_ns]
        if after:
            times.append((min(after) - kill.at_ns) / 1e9)
    return times


@dataclass(frozen=True)
class ProcessRss:
    """The resident set size one worker process reported, first and last (MB), and over
    how long (s)."""

    slot: str
    pid: int
    first_mb: float
    last_mb: float
    peak_mb: float
    seconds: float
    quartiles_mb: tuple[float, ...] = ()
    """The samples at 0, 25, 50, 75 and 100 % of its life: a plateau or a steady climb."""

    @property
    def growth_mb(self) -> float:
        return self.last_mb - self.first_mb


def rss_by_process(events: Sequence[Mapping[str, Any]]) -> list[ProcessRss]:
    """Each worker process's ``rss`` samples, in order of its first one."""
    samples: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        if event["event"] == "rss":
            samples[event["pid"]].append(event)
    result = []
    for pid, rows in samples.items():
        rows = sorted(rows, key=lambda r: r["at_ns"])
        first, last = rows[0], rows[-1]
        result.append(
            ProcessRss(
                slot=first["slot"], pid=pid, first_mb=first["rss_kb"] / 1024,
                last_mb=last["rss_kb"] / 1024, peak_mb=max(r["rss_kb"] for r in rows) / 1024,
                seconds=(last["at_ns"] - first["at_ns"]) / 1e9,
                quartiles_mb=tuple(
                    round(rows[round(q * (len(rows) - 1))]["rss_kb"] / 1024, 1)
                    for q in (0, 0.25, 0.5, 0.75, 1)
                ),
            )
        )  # fmt: skip
    return sorted(result, key=lambda p: (p.slot, p.pid))


def rss_summary(processes: Sequence[ProcessRss], steady: Iterable[str]) -> dict[str, Any]:
    """Growth of each never-killed worker over the run, and of the killed ones' lifetimes."""
    steady = set(steady)
    kept = [p for p in processes if p.slot in steady]
    killed = [p for p in processes if p.slot not in steady]
    out: dict[str, Any] = {
        "steady": [
            {
                "slot": p.slot, "first_mb": round(p.first_mb, 1), "last_mb": round(p.last_mb, 1),
                "peak_mb": round(p.peak_mb, 1), "seconds": round(p.seconds),
                "quartiles_mb": list(p.quartiles_mb),
                "growth_mb_per_min": round(p.growth_mb / p.seconds * 60, 2) if p.seconds else None,
            }
            for p in kept
        ]
    }  # fmt: skip
    if killed:
        lives = sorted(p.seconds for p in killed)
        out["killed"] = {
            "processes": len(killed),
            "lifetime_s_p50": round(percentile(lives, 50), 1),
            "lifetime_s_max": round(lives[-1], 1),
            "first_mb_p50": round(percentile(sorted(p.first_mb for p in killed), 50), 1),
            "peak_mb_max": round(max(p.peak_mb for p in killed), 1),
        }
    return out
