"""A child process of the multi-runtime Cosmos tests: one ``duro.Runtime`` on ``CosmosProvider``.

    python -m tests.cosmos_provider.worker --endpoint URL --database D --container C \\
        --log PATH --state PATH --run LABEL [--lock-timeout S] ...

It serves the container (normally through the test's :class:`tests.cosmos.proxy.CompatProxy`)
until SIGTERM / SIGINT (graceful: in-flight work finishes, the slot lease is given up) or
SIGKILL (nothing is given up: the survivors must take over).

Two files record what it did, one short ``O_APPEND`` write per line:

* ``--log``: ``act,RUN,INSTANCE,STEP,ATTEMPT,TIME`` for every activity execution, written and
  ``fsync``-ed *before* the activity returns (so a committed completion always has a line and
  a re-execution shows up as a second one); ``turn,RUN,INSTANCE,TIME`` whenever orchestration
  code runs live (not replaying) here: which runtime processed which instance.
* ``--state``: a JSON line ``{"t", "run", "owner", "slots"}`` each time the provider's dispatch
  slots change (``slots`` is ``null`` while the runtime is alone and serves all 256).

The workload (:func:`pipeline` and its child) and its expected results live here too, so the
tests and the children agree on them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from typing import Any

import anyio
import anyio.to_thread
import msgspec

import duro
import duro_cosmos._outbox as cosmos_outbox
from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy
from tests.cosmos.compat import EMULATOR_KEY

CHAIN = 2
"""Sequential activities per orchestration, each fed the previous result."""
FAN = 3
"""Activities run in parallel (``ctx.join``) after the chain."""
CHILD_STEPS = 1
"""Sequential activities of the sub-orchestration."""
TIMER_SECONDS = 0.2
STEPS = [*(f"chain-{i}" for i in range(CHAIN)), *(f"fan-{j}" for j in range(FAN)), "final"]
CHILD_STEP_NAMES = [f"child-{i}" for i in range(CHILD_STEPS)]
ORCHESTRATION = "cosmos_pipeline"
CHILD_ORCHESTRATION = "cosmos_child"

BEFORE_LOG = 0.005
AFTER_LOG = 0.01

registry = duro.Registry()
_log_path: str | None = None
_run_label = "?"


def instance_ids(n: int, prefix: str = "mr") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def child_id(instance_id: str) -> str:
    return f"{instance_id}.child"


def seed_of(instance_id: str) -> int:
    return int(instance_id.rsplit("-", 1)[1])


def step_result(value: int) -> int:
    return (value * 3 + 1) % 1_000_003


def expected_child(seed: int) -> int:
    value = seed + 7
    for _ in range(CHILD_STEPS):
        value = step_result(value)
    return value


def expected_output(seed: int) -> int:
    """What ``pipeline(seed)`` returns, computed without duro."""
    value = seed
    for _ in range(CHAIN):
        value = step_result(value)
    parts = [step_result(value + j) for j in range(FAN)]
    return step_result(sum(parts) + expected_child(seed))


def expected_steps(instance_id: str) -> list[tuple[str, str]]:
    """Every (instance, step) the workload of one top-level instance executes."""
    return [(instance_id, s) for s in STEPS] + [
        (child_id(instance_id), s) for s in CHILD_STEP_NAMES
    ]


def _append(line: str, *, sync: bool) -> None:
    assert _log_path is not None, "the log path is set by main()"
    fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short O_APPEND write: lines never interleave
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _note_turn(ctx: duro.OrchestrationContext) -> None:
    if not ctx.is_replaying:
        _append(f"turn,{_run_label},{ctx.instance_id},{time.time():.4f}\n", sync=False)


@registry.activity(name="cosmos_step")
async def cosmos_step(ctx: duro.ActivityContext, job: dict[str, Any]) -> int:
    await anyio.sleep(BEFORE_LOG)
    line = f"act,{_run_label},{ctx.instance_id},{job['step']},{ctx.attempt},{time.time():.4f}\n"
    await anyio.to_thread.run_sync(lambda: _append(line, sync=True))
    await anyio.sleep(AFTER_LOG)
    return step_result(int(job["value"]))


@registry.orchestration(name=CHILD_ORCHESTRATION)
async def cosmos_child(ctx: duro.OrchestrationContext, seed: int) -> int:
    _note_turn(ctx)
    value = seed + 7
    for name in CHILD_STEP_NAMES:
        value = await ctx.schedule_activity(cosmos_step, {"step": name, "value": value})
        _note_turn(ctx)
    return value


@registry.orchestration(name=ORCHESTRATION)
async def pipeline(ctx: duro.OrchestrationContext, seed: int) -> int:
    _note_turn(ctx)
    value = seed
    for i in range(CHAIN):
        value = await ctx.schedule_activity(cosmos_step, {"step": f"chain-{i}", "value": value})
        _note_turn(ctx)
    fan = [
        ctx.schedule_activity(cosmos_step, {"step": f"fan-{j}", "value": value + j})
        for j in range(FAN)
    ]
    child = ctx.schedule_sub_orchestration(
        cosmos_child, seed, instance_id=child_id(ctx.instance_id)
    )
    parts = await ctx.join(fan)
    _note_turn(ctx)
    child_value = await child
    _note_turn(ctx)
    await ctx.schedule_timer(TIMER_SECONDS)
    _note_turn(ctx)
    total = sum(parts) + child_value
    result: int = await ctx.schedule_activity(cosmos_step, {"step": "final", "value": total})
    _note_turn(ctx)
    return result


def runtime_options(run: str, lock_timeout: float, fetch_batch: int = 1) -> duro.RuntimeOptions:
    return duro.RuntimeOptions(
        orchestration_concurrency=8,
        activity_concurrency=16,
        # Short locks: after a kill, the dead runtime's locks expire quickly.
        orchestration_lock_timeout=lock_timeout,
        activity_lock_timeout=lock_timeout,
        poll_timeout=0.25,
        idle_backoff_min=0.0,
        idle_backoff_max=0.05,
        shutdown_grace_period=2.0,
        activity_cancellation_grace=0.5,
        max_sessions=0,
        worker_id=f"worker-{run}",
        # One item per fetch: the shared proxy serialises every request (~85/s), so a batch of
        # items waits long enough for a short lock to lapse and be redelivered (legitimate
        # at-least-once, but these tests assert exactly-once execution within a run).
        activity_fetch_batch=fetch_batch,
        orchestration_fetch_batch=fetch_batch,
    )


def make_provider(
    endpoint: str,
    key: str,
    database: str,
    container: str,
    *,
    owner_id: str | None = None,
    timeout: float = 30.0,
) -> CosmosProvider:
    config = CosmosConfig(endpoint, key, database, container, timeout=timeout)
    retry = HttpRetryPolicy(base_delay=0.02, max_delay=0.5, max_attempts=8)
    return CosmosProvider(config, owner_id=owner_id, retry=retry)


async def _watch_slots(provider: CosmosProvider, state_path: str, run: str) -> None:
    last: object = ()
    while True:
        try:
            slots = await provider.owned_slots()
        except Exception as exc:  # a fault; the fetch loops will hit it too
            print(f"owned_slots failed: {exc!r}", flush=True)
        else:
            current = None if slots is None else sorted(slots)
            if current != last:
                last = current
                line = {"t": time.time(), "run": run, "owner": provider.owner_id, "slots": current}
                fd = os.open(state_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (json.dumps(line) + "\n").encode())
                finally:
                    os.close(fd)
        await anyio.sleep(0.05)


async def run(args: argparse.Namespace) -> None:
    provider = make_provider(
        args.endpoint,
        args.key,
        args.database,
        args.container,
        owner_id=f"runtime-{args.run}",
        timeout=args.request_timeout,
    )
    options = runtime_options(args.run, args.lock_timeout, args.fetch_batch)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with (
            provider,
            duro.Runtime(provider, registry, options),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_watch_slots, provider, args.state, args.run)
            print(f"worker {args.run} running as {provider.owner_id}", flush=True)
            async for _ in signals:
                break
            tg.cancel_scope.cancel()
    print(f"worker {args.run} stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    global _log_path, _run_label
    parser = argparse.ArgumentParser(
        prog="python -m tests.cosmos_provider.worker", description=__doc__
    )
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", default=EMULATOR_KEY)
    parser.add_argument("--database", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--log", required=True, help="activity/turn log (appended)")
    parser.add_argument("--state", required=True, help="slot ownership log (appended)")
    parser.add_argument("--run", required=True, help="label of this runtime")
    parser.add_argument("--lock-timeout", type=float, default=1.0)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--fetch-batch", type=int, default=1, help="turns/activities per fetch")
    parser.add_argument(
        "--reconcile-ms",
        type=int,
        default=None,
        help="outbox reconciler interval and grace (module constants; default: the provider's)",
    )
    args = parser.parse_args(argv)
    if "," in args.run:
        parser.error("--run must not contain a comma")
    if args.reconcile_ms is not None:
        # Not provider options yet: a crashed committer's intents are otherwise re-delivered
        # only 5-15 s later, longer than these tests may take.
        cosmos_outbox.RECONCILE_INTERVAL_MS = args.reconcile_ms
        cosmos_outbox.RECONCILE_GRACE_MS = args.reconcile_ms
    _log_path, _run_label = args.log, args.run
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s {args.run} %(name)s %(levelname)s %(message)s"
    )
    anyio.run(run, args)


if __name__ == "__main__":
    main()


# -- checks the tests share (run in the test process) --------------------------------------------


def _steps_of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def verify_workload(client: duro.Client, ids: list[str]) -> list[str]:
    """Every orchestration and child completed once with the right result; each activity
    scheduled and completed exactly once, each sub-orchestration result recorded exactly once.
    Returns the problems found (empty when all is well)."""
    from duro.history import (
        ActivityCompleted,
        ActivityFailed,
        ActivityScheduled,
        OrchestrationCompleted,
        OrchestrationFailed,
        OrchestrationStarted,
        SubOrchestrationCompleted,
        SubOrchestrationFailed,
        SubOrchestrationScheduled,
        TimerCreated,
        TimerFired,
    )

    problems: list[str] = []

    async def check(instance_id: str, output: int, steps: list[str]) -> list[Any]:
        status = await client.get_status(instance_id)
        if status.state is not duro.State.COMPLETED:
            problems.append(f"{instance_id}: {status.state.value} {status.error}")
            return []
        if status.output != output:
            problems.append(f"{instance_id}: output {status.output!r}, expected {output}")
        if status.execution_id != 1:
            problems.append(f"{instance_id}: execution {status.execution_id}")
        history = await client.get_history(instance_id)
        ids = [e.event_id for e in history]
        if len(set(ids)) != len(ids):
            problems.append(f"{instance_id}: duplicate event ids {ids}")
        for kind, want in ((OrchestrationStarted, 1), (OrchestrationCompleted, 1)):
            got = len(_steps_of(history, kind))
            if got != want:
                problems.append(f"{instance_id}: {got} x {kind.__name__}")
        for bad in (OrchestrationFailed, ActivityFailed, SubOrchestrationFailed):
            if _steps_of(history, bad):
                problems.append(f"{instance_id}: {bad.__name__} in history")
        scheduled = {
            e.seq: msgspec.json.decode(e.input)["step"]
            for e in _steps_of(history, ActivityScheduled)
        }
        names = sorted(scheduled.values())
        if names != sorted(steps):
            problems.append(f"{instance_id}: scheduled steps {names}")
        completed = [e.seq for e in _steps_of(history, ActivityCompleted)]
        if sorted(completed) != sorted(scheduled):
            problems.append(
                f"{instance_id}: activity completions by seq {sorted(completed)} for scheduled "
                f"{sorted(scheduled)} (each must be recorded exactly once)"
            )
        return history

    for instance_id in ids:
        seed = seed_of(instance_id)
        history = await check(instance_id, expected_output(seed), STEPS)
        if history:
            subs = _steps_of(history, SubOrchestrationScheduled)
            results = _steps_of(history, SubOrchestrationCompleted)
            if len(subs) != 1 or len(results) != 1 or results[0].seq != subs[0].seq:
                problems.append(
                    f"{instance_id}: {len(subs)} sub-orchestrations scheduled, "
                    f"{len(results)} results recorded"
                )
            elif msgspec.json.decode(results[0].result) != expected_child(seed):
                problems.append(f"{instance_id}: child result {results[0].result!r}")
            if (
                len(_steps_of(history, TimerCreated)) != 1
                or len(_steps_of(history, TimerFired)) != 1
            ):
                problems.append(f"{instance_id}: timer created/fired not exactly once")
        await check(child_id(instance_id), expected_child(seed), CHILD_STEP_NAMES)
    return problems


def read_log(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[str, str, str, int, float]], list[tuple[str, str, float]]]:
    """``(activity executions, live turns)`` from a ``--log`` file."""
    acts: list[tuple[str, str, str, int, float]] = []
    turns: list[tuple[str, str, float]] = []
    if not os.path.exists(path):
        return acts, turns
    with open(path) as f:
        for line in f.read().splitlines():
            parts = line.split(",")
            if parts[0] == "act":
                acts.append((parts[1], parts[2], parts[3], int(parts[4]), float(parts[5])))
            elif parts[0] == "turn":
                turns.append((parts[1], parts[2], float(parts[3])))
    return acts, turns


def read_states(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f.read().splitlines() if line.strip()]
