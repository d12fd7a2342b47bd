"""Several runtimes in separate processes share one Cosmos container (through one compat proxy).

Each runtime is a child process (``tests/cosmos_provider/worker.py``) with its own
``CosmosProvider``; all of them talk HTTP to the test's ``CompatProxy``, so atomic batches are
serialised across processes as Cosmos would. The test process starts the orchestrations and
reads the results through the proxy too.

* two runtimes complete a workload (activity chain, fan-out, sub-orchestration in another
  partition, durable timer) with every orchestration completed exactly once, every activity
  completion recorded exactly once, and every turn run by the owner of the instance's slot;
* a runtime killed with SIGKILL: its slot lease expires, the survivor takes over its slots and
  its in-flight turns and activities, and everything still completes exactly once (activities
  at least once);
* a runtime joining splits the slots, leaving gives them back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

import duro
from duro_cosmos import CosmosProvider
from duro_cosmos._documents import SLOT_COUNT, slot_of
from duro_cosmos._membership import assign
from tests.cosmos.proxy import ProxyEnv

from . import worker

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL = 0.05
LIVENESS_DEADLINE = 60.0
"""Seconds a workload may take before it counts as stuck: about 10 s alone, but over 25 s
with other suites sharing the two cores (the proxy serialises every request)."""


@dataclass
class Child:
    run: str
    proc: subprocess.Popen[bytes]
    out_path: Path
    stopped: bool = False

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")[-4000:]


@dataclass
class Cluster:
    """Worker processes on one container, their logs, and a client in the test process."""

    env: ProxyEnv
    dir: Path
    store: CosmosProvider
    children: dict[str, Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = duro.Client(self.store)

    @property
    def log(self) -> Path:
        return self.dir / "work.log"

    def state_path(self, run: str) -> Path:
        return self.dir / f"state-{run}.jsonl"

    def launch(self, run: str, *, lock_timeout: float) -> Child:
        out_path = self.dir / f"{run}.out"
        with out_path.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "tests.cosmos_provider.worker",
                    "--endpoint", self.env.url, "--key", self.env.key,
                    "--database", self.env.database, "--container", self.env.container,
                    "--log", str(self.log), "--state", str(self.state_path(run)),
                    "--run", run,
                    "--lock-timeout", str(lock_timeout), "--reconcile-ms", "1000",
                ],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        child = Child(run, proc, out_path)
        self.children[run] = child
        return child

    def states(self, run: str) -> list[dict[str, Any]]:
        return worker.read_states(self.state_path(run))

    def slots_now(self, run: str) -> frozenset[int] | str | None:
        """Latest slot set the runtime reported; ``None`` = all (alone); "" = nothing yet."""
        states = self.states(run)
        if not states:
            return ""
        slots = states[-1]["slots"]
        return None if slots is None else frozenset(slots)

    def check_alive(self) -> None:
        for child in self.children.values():
            code = child.proc.poll()
            if code is not None and not child.stopped and code != -signal.SIGKILL:
                pytest.fail(f"worker {child.run} exited {code}:\n{child.output()}")

    async def wait_for(self, what: str, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.check_alive()
            if time.monotonic() > deadline:
                outputs = "\n".join(f"--- {c.run}:\n{c.output()}" for c in self.children.values())
                pytest.fail(f"timed out after {timeout} s waiting for {what}\n{outputs}")
            await anyio.sleep(POLL)

    async def wait_split(self, runs: list[str], timeout: float = 10.0) -> dict[str, frozenset[int]]:
        """Until every runtime in ``runs`` reports the rendezvous share of exactly ``runs``."""
        owners = [f"runtime-{r}" for r in runs]
        expected = {r: assign(sorted(owners), f"runtime-{r}") for r in runs}
        await self.wait_for(
            f"slots split between {runs}",
            lambda: all(self.slots_now(r) == expected[r] for r in runs),
            timeout,
        )
        return expected

    async def wait_alone(self, run: str, timeout: float = 10.0) -> None:
        await self.wait_for(
            f"{run} to own every slot", lambda: self.slots_now(run) is None, timeout
        )

    async def start(self, ids: list[str]) -> None:
        for instance_id in ids:
            await self.client.start_orchestration(
                instance_id, worker.ORCHESTRATION, worker.seed_of(instance_id)
            )

    async def completed(self, ids: list[str]) -> set[str]:
        done = set()
        for instance_id in ids:
            status = await self.client.get_status(instance_id)
            if status.state.is_terminal:
                done.add(instance_id)
        return done

    async def wait_all_done(self, ids: list[str], timeout: float) -> float:
        started = time.monotonic()
        deadline = started + timeout
        pending = list(ids)
        while pending:
            self.check_alive()
            pending = [i for i in pending if i not in await self.completed(pending)]
            if not pending:
                break
            if time.monotonic() > deadline:
                outputs = "\n".join(f"--- {c.run}:\n{c.output()}" for c in self.children.values())
                pytest.fail(
                    f"{len(pending)} orchestrations unfinished: {pending[:5]}\n{outputs}\n"
                    + await self.describe(pending[:3])
                )
            await anyio.sleep(0.2)
        return time.monotonic() - started

    async def describe(self, ids: list[str]) -> str:
        """What the container and the logs hold for ``ids`` and their children: the story of
        a stuck instance, for the failure message."""
        lines = []
        for instance_id in ids:
            for pk in (instance_id, worker.child_id(instance_id)):
                rows = await self.store._ctx.store.query_partition(
                    pk, "SELECT * FROM c WHERE c.instanceId = @pk"
                )
                lines.append(f"=== partition {pk}: {len(rows)} documents")
                for row in sorted(rows, key=lambda r: (r.get("type", ""), r["id"])):
                    shown = {k: v for k, v in row.items() if not k.startswith("_")}
                    lines.append(f"  {str(shown)[:600]}")
                acts = [e for e in self.executions() if e[1] == pk]
                turns = [t for t in self.turns() if t[1] == pk]
                lines.append(f"  activities run: {acts}")
                lines.append(f"  live turns: {turns}")
        for run in self.children:
            lines.append(f"=== slots of {run}: {self.states(run)[-3:]}")
        return "\n".join(lines)

    def kill(self, run: str) -> float:
        child = self.children[run]
        os.kill(child.proc.pid, signal.SIGKILL)
        assert child.proc.wait(timeout=10) == -signal.SIGKILL
        return time.time()

    def stop(self, run: str, timeout: float = 15.0) -> None:
        child = self.children[run]
        child.stopped = True
        child.proc.send_signal(signal.SIGTERM)
        try:
            code = child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
            pytest.fail(f"worker {run} did not stop on SIGTERM:\n{child.output()}")
        assert code == 0, f"worker {run} exited {code}:\n{child.output()}"

    def cleanup(self) -> None:
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()

    # -- what the logs say ------------------------------------------------------------------

    def executions(self) -> list[tuple[str, str, str, int, float]]:
        return worker.read_log(self.log)[0]

    def turns(self) -> list[tuple[str, str, float]]:
        return worker.read_log(self.log)[1]


@pytest.fixture
async def cluster(cosmos_proxy_env: ProxyEnv, tmp_path: Path) -> AsyncIterator[Cluster]:
    env = cosmos_proxy_env
    store = worker.make_provider(env.url, env.key, env.database, env.container)
    async with store:
        await store.open()  # bootstrap the database and container before the children race
        cluster = Cluster(env, tmp_path, store)
        try:
            yield cluster
        finally:
            cluster.cleanup()
            seen = Counter((e.info.kind, e.status) for e in env.log.entries)
            print(f"requests through the proxy: {len(env.log.entries)}: {dict(seen)}")
    assert not env.proxy.internal_errors, env.proxy.internal_errors[0]


def check_activity_log(cluster: Cluster, ids: list[str], *, exactly_once: bool) -> Counter[Any]:
    """Every step of the workload executed (at least once); returns executions per step."""
    expected = {step for i in ids for step in worker.expected_steps(i)}
    executed = Counter((instance, step) for _, instance, step, _, _ in cluster.executions())
    missing = expected - set(executed)
    assert not missing, f"steps completed without an execution: {sorted(missing)[:10]}"
    assert set(executed) == expected, f"unexpected executions: {set(executed) - expected}"
    if exactly_once:
        twice = {k: n for k, n in executed.items() if n > 1}
        detail = [e for e in cluster.executions() if (e[1], e[2]) in twice]
        assert not twice, f"without a crash, steps ran more than once: {twice} {detail}"
    return executed


def owner_of(instance_id: str, shares: dict[str, frozenset[int]]) -> str:
    slot = slot_of(instance_id)
    return next(run for run, slots in shares.items() if slot in slots)


# -- the tests ----------------------------------------------------------------------------------


async def test_two_runtimes_share_a_container_and_complete_every_orchestration_once(
    cluster: Cluster,
) -> None:
    ids = worker.instance_ids(12)
    for run in ("a", "b"):
        cluster.launch(run, lock_timeout=2.0)
    shares = await cluster.wait_split(["a", "b"])
    assert shares["a"] | shares["b"] == frozenset(range(SLOT_COUNT))
    assert not shares["a"] & shares["b"]

    await cluster.start(ids)
    elapsed = await cluster.wait_all_done(ids, timeout=LIVENESS_DEADLINE)
    cluster.stop("a")
    cluster.stop("b")

    problems = await worker.verify_workload(cluster.client, ids)
    assert not problems, "\n".join(problems[:20])
    check_activity_log(cluster, ids, exactly_once=True)

    # Slots route turns: every live turn of an instance ran on the owner of its slot.
    turns = cluster.turns()
    by_runtime = Counter(run for run, _, _ in turns)
    assert by_runtime["a"] > 0 and by_runtime["b"] > 0, by_runtime
    misrouted = [(run, i) for run, i, _ in turns if run != owner_of(i, shares)]
    assert not misrouted, f"turns run outside the runtime's slots: {misrouted[:10]}"
    acts = Counter(run for run, *_ in cluster.executions())
    print(
        f"{len(ids)} orchestrations in {elapsed:.1f} s; "
        f"turns {dict(by_runtime)}, activities {dict(acts)}"
    )


async def test_sigkilled_runtime_slots_and_in_flight_work_are_taken_over(
    cluster: Cluster,
) -> None:
    ids = worker.instance_ids(16)
    for run in ("a", "b"):
        cluster.launch(run, lock_timeout=1.0)
    shares = await cluster.wait_split(["a", "b"])
    mine = {run: {i for i in ids if owner_of(i, shares) == run} for run in shares}
    assert mine["a"] and mine["b"]

    await cluster.start(ids)
    # Kill `a` in the middle of things: it has done real work, and has work left to do.
    await cluster.wait_for(
        "a to make progress",
        lambda: sum(1 for e in cluster.executions() if e[0] == "a") >= 30,
        timeout=20,
    )
    killed_at = cluster.kill("a")
    unfinished_of_a = mine["a"] - await cluster.completed(sorted(mine["a"]))
    assert unfinished_of_a, "a had finished all its instances before the kill"

    await cluster.wait_alone("b", timeout=10)
    elapsed = await cluster.wait_all_done(ids, timeout=LIVENESS_DEADLINE)
    cluster.stop("b")

    problems = await worker.verify_workload(cluster.client, ids)
    assert not problems, "\n".join(problems[:20])
    executed = check_activity_log(cluster, ids, exactly_once=False)

    # The survivor took over the dead runtime's instances: it ran their turns after the kill.
    taken_over = {
        i for run, i, t in cluster.turns() if run == "b" and t > killed_at and i in mine["a"]
    }
    assert taken_over, "b never ran a turn of an instance in a's slots"
    missing = {i for i in unfinished_of_a if i not in taken_over}
    assert not missing, f"instances of a finished without b running a turn: {sorted(missing)}"
    # ... and nothing ran twice except what a may have been running when it died.
    per_run: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for run, instance, step, _, _ in cluster.executions():
        per_run[run][instance, step] += 1
    for run, counts in per_run.items():
        assert all(n == 1 for n in counts.values()), f"{run} ran a step twice: {counts}"
    redone = sorted(k for k, n in executed.items() if n > 1)
    print(
        f"killed a with {len(unfinished_of_a)} of its {len(mine['a'])} instances unfinished; "
        f"b finished them in {elapsed:.1f} s; {len(taken_over)} taken over, "
        f"{len(redone)} activities re-executed: {redone[:5]}"
    )


async def test_a_joining_runtime_gets_its_share_of_slots_and_a_leaving_one_returns_it(
    cluster: Cluster,
) -> None:
    ids = worker.instance_ids(16)
    cluster.launch("a", lock_timeout=2.0)
    await cluster.wait_alone("a")
    await cluster.start(ids)
    await cluster.wait_for(
        "a to make progress", lambda: len(cluster.executions()) >= 20, timeout=20
    )

    cluster.launch("b", lock_timeout=2.0)
    shares = await cluster.wait_split(["a", "b"], timeout=15)
    split_at = max(cluster.states(r)[-1]["t"] for r in ("a", "b"))
    assert 64 < len(shares["b"]) < 192, f"an unbalanced split: {len(shares['b'])} slots"
    await cluster.wait_all_done(ids, timeout=LIVENESS_DEADLINE)

    # After the split, turns follow the slots; b processed instances in its share.
    after = [(run, i) for run, i, t in cluster.turns() if t > split_at + 0.5]
    assert any(run == "b" for run, _ in after), "b never ran a turn after joining"
    misrouted = [(run, i) for run, i in after if run != owner_of(i, shares)]
    assert not misrouted, f"turns outside the runtime's slots after the split: {misrouted[:10]}"

    cluster.stop("b")  # leaving deletes the lease at once: a takes everything back
    await cluster.wait_alone("a", timeout=5)
    cluster.stop("a")
    problems = await worker.verify_workload(cluster.client, ids)
    assert not problems, "\n".join(problems[:20])
    check_activity_log(cluster, ids, exactly_once=True)
