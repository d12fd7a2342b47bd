"""The soak test: the mixed workload on three worker processes, one SIGKILLed every few seconds.

    python -m tests.reliability.soak --store sqlite --minutes 10
    python -m tests.reliability.soak --store cosmos --minutes 10 --rate 30
    python -m tests.reliability.soak --store sqlite --minutes 3 --random-ids

The driver sets the store up (SQLite: a new file; Cosmos: the local test server, unless
``--server`` names a running one, behind a :class:`~tests.cosmos.proxy.CompatProxy` that
answers ``--throttle`` of the document requests with 429), starts ``--workers`` processes
(:mod:`tests.reliability.soak_worker`, default runtime options, stable worker ids ``soak-w0``
... unless ``--random-ids``), and for ``--minutes``:

* starts instances of the mixed workload (:mod:`tests.reliability.workload`) at ``--rate`` a
  minute, so kills land on every kind of step;
* every ``--kill-every`` seconds (jittered by +-50 %) SIGKILLs a random worker and starts its
  replacement at once (``--aim``: wait, up to 2 s, until that worker has an activity running).
  The first ``--steady`` workers are never killed: their resident set size over the whole run
  is the memory-growth figure.

Then it stops killing, waits for every instance to finish (``--drain-timeout``), stops the
workers with SIGTERM, and runs :func:`tests.reliability.checks.check`: every instance completed
with its output, every history whole, no activity ran after the run whose result was
committed, no queue holds anything, every history replays on the workload's code. It
prints the figures and writes them as JSON (``--out``,
default ``soak-<store>.json`` in ``--dir``): instances, kills, duration, throughput,
executions, duplicates, lost, recovery times, worker RSS and store size (see
:mod:`tests.reliability.soak_figures`). The exit status is 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

import duro

from . import workload
from .checks import Findings, check
from .soak_figures import Kill, Recovery, Spread, recovery, rss_by_process, rss_summary
from .soak_store import SoakStore, open_store

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
"""Seconds the first workers may take to start (imports on a loaded machine)."""
STOP_TIMEOUT = 30.0
"""Seconds a worker may take to stop on SIGTERM (the default grace period is 10 s)."""


@dataclass(frozen=True, kw_only=True)
class SoakConfig:
    store: str = "sqlite"
    minutes: float = 10.0
    """How long instances are started and workers killed (then the drain)."""
    workers: int = 3
    steady: int = 1
    """Of the workers, how many are never killed (their RSS growth is measured)."""
    rate: float | None = None
    """Instances started a minute (None: 600 on SQLite, 120 on Cosmos)."""
    kill_every: float = 4.0
    """Mean seconds between kills; each gap is drawn from [0.5, 1.5] times this."""
    random_ids: bool = False
    """Default (unique per process) worker ids instead of stable ``soak-wN``."""
    aim: bool = False
    """Kill a worker only while it runs an activity (up to 2 s of waiting for one)."""
    step_seconds: float = 0.25
    """How long every activity runs."""
    throttle: float = 0.05
    """Cosmos: the share of document requests answered with 429."""
    drain_timeout: float = 300.0
    reconcile_ms: int | None = None
    """Cosmos: the outbox reconciler's interval and grace (None: the provider's)."""
    seed: int = 12
    prefix: str = "soak"
    execution_cache_size: int | None = None
    """The workers' ``RuntimeOptions.execution_cache_size`` (None: the default)."""

    @property
    def instances_per_minute(self) -> float:
        if self.rate is not None:
            return self.rate
        return 600.0 if self.store == "sqlite" else 120.0


@dataclass
class SoakReport:
    config: SoakConfig
    findings: Findings
    recovery: Recovery
    instances: int
    kills: int
    kill_phase_s: float
    drain_s: float
    unfinished_after_drain: int
    problems: list[str] = field(default_factory=list)
    """Worker processes that died on their own or did not stop cleanly, proxy errors."""
    throttled: int = 0
    started_at: str = ""
    rss: dict[str, Any] = field(default_factory=dict)
    store_size: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.findings.wrong)

    @property
    def clean(self) -> bool:
        return self.findings.clean and not self.problems

    @property
    def duration_s(self) -> float:
        return self.kill_phase_s + self.drain_s

    def throughput(self) -> dict[str, float]:
        seconds = self.duration_s or 1.0
        return {
            "instances_per_min": round(self.instances / seconds * 60, 1),
            "activity_runs_per_s": round(self.findings.executions / seconds, 2),
        }

    def figures(self) -> dict[str, Any]:
        f = self.findings
        return {
            "store": self.config.store,
            "started_at": self.started_at,
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus",
            "config": dataclasses.asdict(self.config),
            "instances": self.instances,
            "kills": self.kills,
            "duration_s": round(self.duration_s, 1),
            "kill_phase_s": round(self.kill_phase_s, 1),
            "drain_s": round(self.drain_s, 1),
            "throughput": self.throughput(),
            "executions": f.executions,
            "duplicates": f.duplicates,
            "lost": self.lost,
            "broken_histories": len(f.broken_histories),
            "reruns_after_commit": len(f.reruns_after_commit),
            "leftover_queues": f.leftover_queues,
            "not_replaying": len(f.not_replaying),
            "worker_rss": self.rss,
            "store_size": self.store_size,
            "throttled_requests": self.throttled,
            "recovery": self.recovery.summary(),
            "problems": self.problems[:20],
            "findings": f.summary(),
            "clean": self.clean,
        }

    def text(self) -> str:
        f, r = self.findings, self.recovery
        lines = [
            f"{self.config.store}: {self.instances} instances, {self.kills} kills "
            f"({r.kills_interrupting} interrupted work), {self.kill_phase_s:.0f} s of kills "
            f"+ {self.drain_s:.1f} s drain",
            f"executions {f.executions}, duplicates {f.duplicates}, lost {self.lost}, "
            f"re-runs after commit {len(f.reruns_after_commit)}, broken histories "
            f"{len(f.broken_histories)}, not replaying {len(f.not_replaying)}, queues "
            f"{f.leftover_queues or 'empty'}",
            f"throughput: {self.throughput()}",
            f"activity recovery: {Spread.of(r.activity)}",
            f"turn recovery:     {Spread.of(r.turn)}",
            f"restart:           {Spread.of(r.restart)}",
            f"re-runs without a kill: {r.activity_reruns_without_kill} activities, "
            f"{r.turn_reruns_without_kill} turns",
            f"worker RSS: {self.rss}",
            f"store size: {self.store_size}",
        ]
        if self.throttled:
            lines.append(f"429s injected: {self.throttled}")
        lines.append("CLEAN" if self.clean else f"NOT CLEAN: {f.summary()}; {self.problems[:5]}")
        return "\n".join(lines)


# -- the worker processes ----------------------------------------------------------------------


class Workers:
    """The worker processes, by slot (``w0``...), each replaced at once when killed."""

    def __init__(self, config: SoakConfig, directory: Path, store_args: list[str]) -> None:
        self.config = config
        self.dir = directory
        self.store_args = store_args
        self.run_log = directory / "runs.jsonl"
        self.turn_log = directory / "turns.jsonl"
        self.events = directory / "events.jsonl"
        self.slots = [f"w{n}" for n in range(config.workers)]
        self.killable = self.slots[config.steady :] or self.slots
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.generation: dict[str, int] = dict.fromkeys(self.slots, 0)
        self.kills: list[Kill] = []
        self.problems: list[str] = []
        self.env = dict(
            os.environ,
            DURO_RELIABILITY_RUN_LOG=str(self.run_log),
            DURO_RELIABILITY_TURN_LOG=str(self.turn_log),
            DURO_RELIABILITY_STEP_SECONDS=str(config.step_seconds),
        )

    def output_path(self, slot: str) -> Path:
        return self.dir / f"{slot}-{self.generation[slot]}.out"

    def launch(self, slot: str) -> None:
        self.generation[slot] += 1
        args = [sys.executable, "-m", "tests.reliability.soak_worker", "--slot", slot]
        args += ["--events", str(self.events), *self.store_args]
        if not self.config.random_ids:
            args += ["--worker-id", f"soak-{slot}"]
        if self.config.execution_cache_size is not None:
            args += ["--execution-cache-size", str(self.config.execution_cache_size)]
        with self.output_path(slot).open("wb") as out:
            self.procs[slot] = subprocess.Popen(
                args, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self, slot: str) -> Kill:
        proc = self.procs[slot]
        at_ns = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kill = Kill(slot, proc.pid, at_ns)
        self.kills.append(kill)
        # Beside the workers' own lines, so a run's timeline can be read back from its logs.
        line = {"event": "killed", "slot": slot, "pid": proc.pid, "at_ns": at_ns}
        with self.events.open("a") as events:
            events.write(json.dumps(line) + "\n")
        return kill

    def check_alive(self) -> None:
        """A worker that died on its own is a finding; it is replaced like a killed one."""
        for slot, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.output_path(slot).read_text(errors="replace")[-2000:]
                self.problems.append(f"{slot} (pid {proc.pid}) exited {proc.returncode}: {tail}")
                self.launch(slot)

    def ready(self) -> set[int]:
        if not self.events.exists():
            return set()
        lines = self.events.read_text().splitlines()
        return {json.loads(line)["pid"] for line in lines if '"ready"' in line}

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while {p.pid for p in self.procs.values()} - self.ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start in {READY_TIMEOUT} s")
            await anyio.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for slot, proc in self.procs.items():
            try:
                code = proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            if code != 0:
                tail = self.output_path(slot).read_text(errors="replace")[-2000:]
                self.problems.append(f"{slot} did not stop cleanly ({code}): {tail}")

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class RunTail:
    """The latest activity start of each process, read incrementally from the run log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.latest: dict[int, int] = {}
        self.lines = 0

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        for line in data[:end].splitlines():
            row = json.loads(line)
            self.latest[row["pid"]] = max(self.latest.get(row["pid"], 0), row["start_ns"])
            self.lines += 1


# -- the run -----------------------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, flush=True)


async def _start(client: duro.Client, instance: workload.Instance) -> None:
    for _ in range(100):
        try:
            await workload.start(client, instance)
            return
        except duro.ProviderError as exc:
            if not exc.retryable:
                raise
            await anyio.sleep(0.05)
    raise RuntimeError(f"could not start {instance.instance_id}")


class Soak:
    def __init__(self, config: SoakConfig, directory: Path, store: SoakStore) -> None:
        self.config = config
        self.store = store
        self.workers = Workers(config, directory, store.worker_args)
        self.tail = RunTail(self.workers.run_log)
        self.rng = random.Random(config.seed)
        self.started: list[workload.Instance] = []
        self.log: Callable[[str], None] = _say

    async def start_instances(self, client: duro.Client, until: float) -> None:
        interval = 60.0 / self.config.instances_per_minute
        next_at = time.monotonic()
        while time.monotonic() < until:
            instance = workload.instance(len(self.started), self.config.prefix)
            await _start(client, instance)
            self.started.append(instance)
            next_at += interval
            await anyio.sleep(max(0.0, next_at - time.monotonic()))

    async def kill_workers(self, until: float) -> None:
        mean = self.config.kill_every
        while True:
            gap = mean * self.rng.uniform(0.5, 1.5)
            if time.monotonic() + gap > until:
                return
            await anyio.sleep(gap)
            self.workers.check_alive()
            slot = self.rng.choice(self.workers.killable)
            if self.config.aim:
                await self._wait_busy(slot, timeout=2.0)
            self.workers.kill(slot)
            self.workers.launch(slot)

    async def _wait_busy(self, slot: str, timeout: float) -> None:
        """Until ``slot``'s process started an activity within the last half of a step: it is
        still running it (each runs ``step_seconds``)."""
        pid = self.workers.procs[slot].pid
        window_ns = int(self.config.step_seconds * 1e9 / 2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tail.read()
            if self.tail.latest.get(pid, 0) > time.time_ns() - window_ns:
                return
            await anyio.sleep(0.005)

    async def report_progress(self, began: float, throttled: Callable[[], int]) -> None:
        while True:
            await anyio.sleep(15)
            self.tail.read()
            self.log(
                f"  {time.monotonic() - began:5.0f} s: {len(self.started)} instances started, "
                f"{len(self.workers.kills)} kills, {self.tail.lines} activity runs, "
                f"{throttled()} throttled"
            )

    async def drain(self, client: duro.Client, timeout: float) -> int:
        """Wait until every instance has finished; returns how many had not by ``timeout``."""
        pending = [i.instance_id for i in self.started]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            self.workers.check_alive()
            still = []
            for instance_id in pending:
                try:
                    status = await client.get_status(instance_id)
                except duro.ProviderError:
                    still.append(instance_id)
                    continue
                if not status.state.is_terminal:
                    still.append(instance_id)
            pending = still
            if pending:
                await anyio.sleep(0.5)
        return len(pending)

    async def run(self) -> SoakReport:
        config, workers = self.config, self.workers
        started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        async with self.store.provider() as provider:
            await provider.open()  # create the schema before the workers race to
            client = duro.Client(provider, registry=workload.registry)
            try:
                for slot in workers.slots:
                    workers.launch(slot)
                await workers.wait_ready()
                began = time.monotonic()
                until = began + config.minutes * 60
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.report_progress, began, self.store.throttled)
                    async with anyio.create_task_group() as phase:
                        phase.start_soon(self.start_instances, client, until)
                        phase.start_soon(self.kill_workers, until)
                    kill_phase = time.monotonic() - began
                    self.log(f"  kills over; draining {len(self.started)} instances")
                    unfinished = await self.drain(client, config.drain_timeout)
                    drain = time.monotonic() - began - kill_phase
                    tg.cancel_scope.cancel()
                workers.stop()
            finally:
                workers.cleanup()
            throttled = self.store.throttled()
            self.store.calm()
            findings = await check(client, self.started, [workers.run_log])
        store_size = self.store.size()
        problems = workers.problems + self.store.problems()
        if findings.leftover_queues:
            problems += [f"left queued: {line}" for line in self.store.leftovers()[:20]]
        figures = recovery(
            workers.kills, workers.run_log, workers.turn_log, workers.events, findings.kept
        )
        return SoakReport(
            config=config,
            findings=findings,
            recovery=figures,
            instances=len(self.started),
            kills=len(workers.kills),
            kill_phase_s=kill_phase,
            drain_s=drain,
            unfinished_after_drain=unfinished,
            problems=problems,
            throttled=throttled,
            started_at=started_at,
            rss=rss_summary(
                rss_by_process(_events(workers.events)), workers.slots[: config.steady]
            ),
            store_size=store_size,
        )


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def run_soak(
    config: SoakConfig,
    directory: Path,
    *,
    server_url: str | None = None,
    log: Callable[[str], None] | None = None,
) -> SoakReport:
    """Run one soak in ``directory`` (an existing one: logs, worker output and the SQLite
    file stay there)."""
    with open_store(config, directory, server_url) as store:
        soak = Soak(config, directory, store)
        soak.log = log or _say
        return await soak.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    default = SoakConfig()
    parser.add_argument("--store", choices=("sqlite", "cosmos"), default="sqlite")
    parser.add_argument("--minutes", type=float, default=default.minutes)
    parser.add_argument("--workers", type=int, default=default.workers)
    parser.add_argument("--steady", type=int, default=default.steady, help="never killed")
    parser.add_argument("--rate", type=float, help="instances a minute (600 SQLite, 120 Cosmos)")
    parser.add_argument("--kill-every", type=float, default=default.kill_every, help="seconds")
    parser.add_argument("--random-ids", action="store_true", help="default worker ids")
    parser.add_argument("--aim", action="store_true", help="kill workers mid-activity")
    parser.add_argument("--step-seconds", type=float, default=default.step_seconds)
    parser.add_argument("--throttle", type=float, default=default.throttle, help="Cosmos 429s")
    parser.add_argument("--drain-timeout", type=float, default=default.drain_timeout)
    parser.add_argument("--reconcile-ms", type=int, help="Cosmos outbox reconciler (ms)")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--execution-cache-size", type=int, help="workers' (default: runtime's)")
    parser.add_argument("--server", help="a running Cosmos test server (default: start one)")
    parser.add_argument("--dir", type=Path, help="where logs go (default: a new temp dir)")
    parser.add_argument("--out", type=Path, help="the JSON figures (default: in --dir)")
    args = parser.parse_args(argv)
    config = SoakConfig(
        store=args.store, minutes=args.minutes, workers=args.workers, steady=args.steady,
        rate=args.rate,
        kill_every=args.kill_every, random_ids=args.random_ids, aim=args.aim,
        step_seconds=args.step_seconds, throttle=args.throttle,
        drain_timeout=args.drain_timeout, reconcile_ms=args.reconcile_ms, seed=args.seed,
        execution_cache_size=args.execution_cache_size,
    )  # fmt: skip
    directory = args.dir or Path(tempfile.mkdtemp(prefix=f"duro-soak-{args.store}-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"soak: {config} in {directory}", flush=True)
    report = anyio.run(lambda: run_soak(config, directory, server_url=args.server))
    figures = report.figures()
    given = sys.argv[1:] if argv is None else argv
    figures["command"] = shlex.join(["python", "-m", "tests.reliability.soak", *given])
    out = args.out or directory / f"soak-{args.store}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(report.text())
    print(f"figures: {out}")
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
