"""The mixed workload the fault and soak tests run, and what each instance must return.

Every feature that keeps state across turns is in it: chains, fan-out/fan-in, durable timers,
external events (raced against a timer), sub-orchestrations, continue-as-new with KV carried
over, activity retries, KV and session-pinned activities. Each orchestration's output is a
pure function of its seed (:func:`expected_output`), so a run is checked without trusting it.

Every activity execution is logged (:class:`RunLog`), and every result carries the id of the
execution that produced it, so :mod:`tests.reliability.checks` can tell which run's result
the history kept and whether any run started after it. Orchestration code that runs live (not
replaying) logs where it got to (:class:`TurnLog`), so the soak test sees a turn that a killed
process ran but never committed run again elsewhere, and when.

Both logs, and a pause in every activity (so a process killed at random is often in the
middle of one), are off unless the environment asks for them: ``DURO_RELIABILITY_RUN_LOG``,
``DURO_RELIABILITY_TURN_LOG`` (file paths) and ``DURO_RELIABILITY_STEP_SECONDS``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

import duro

KINDS = ("chain", "fan", "timers", "events", "parent", "looping", "retrying", "kv", "sessioned")
"""Orchestration kinds, cycled through by :func:`instance_ids`."""

CHAIN = 4
FAN = 5
TIMERS = 2
TIMER_SECONDS = 0.2
LOOPS = 3
EVENT_NAME = "go"
EVENT_FALLBACK_SECONDS = 3600.0
"""The timer an event races: never the winner unless events are lost."""
FLAKY_FAILURES = 2
"""A retried activity fails its first attempts (by ``ctx.attempt``) and then succeeds."""
SESSIONS = 4

RETRY = duro.RetryPolicy(max_attempts=8, initial_interval=0.05, max_interval=0.2)

STEP_SECONDS = float(os.environ.get("DURO_RELIABILITY_STEP_SECONDS", "0"))
"""How long each activity takes after logging its start (its work, as far as a kill sees)."""

registry = duro.Registry()


def _append(path: str, line: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


class RunLog:
    """One line per activity execution, appended before it does anything else.

    ``O_APPEND`` writes of a few hundred bytes are atomic between processes, and survive the
    writer's SIGKILL (they are in the kernel once ``write`` returns)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def started(self, ctx: duro.ActivityContext, key: str) -> str:
        run = uuid.uuid4().hex
        if self.path is not None:
            line = {
                "run": run,
                "key": f"{ctx.instance_id}/{ctx.execution_id}/{key}",
                "attempt": ctx.attempt,
                "worker": ctx.worker_id,
                "pid": os.getpid(),
                "start_ns": time.time_ns(),
            }
            _append(self.path, line)
        return run


class TurnLog:
    """One line each time orchestration code reaches a point live (not replaying).

    A point is reached live once per committed turn; reaching it live again (in another
    process) means the turn that first reached it was never committed: the process running it
    died, or lost its lock."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def live(self, ctx: duro.OrchestrationContext, point: str) -> None:
        if self.path is not None and not ctx.is_replaying:
            line = {
                "key": f"{ctx.instance_id}/{ctx.execution_id}/{point}",
                "pid": os.getpid(),
                "at_ns": time.time_ns(),
            }
            _append(self.path, line)


run_log = RunLog(os.environ.get("DURO_RELIABILITY_RUN_LOG"))
"""Where this process logs executions (the environment variable, or nowhere)."""
turn_log = TurnLog(os.environ.get("DURO_RELIABILITY_TURN_LOG"))
"""Where this process logs live orchestration progress (the environment variable, or nowhere)."""


def step_value(value: int) -> int:
    return (value * 31 + 7) % 1_000_003


# -- activities --------------------------------------------------------------------------------


@registry.activity
async def step(ctx: duro.ActivityContext, arg: dict[str, Any]) -> dict[str, Any]:
    run = run_log.started(ctx, arg["key"])
    if STEP_SECONDS:
        await anyio.sleep(STEP_SECONDS)
    return {"run": run, "value": step_value(arg["value"])}


@registry.activity
async def flaky(ctx: duro.ActivityContext, arg: dict[str, Any]) -> dict[str, Any]:
    run = run_log.started(ctx, arg["key"])
    if STEP_SECONDS:
        await anyio.sleep(STEP_SECONDS)
    if ctx.attempt <= FLAKY_FAILURES:
        raise RuntimeError(f"flaky on attempt {ctx.attempt} (run {run})")
    return {"run": run, "value": step_value(arg["value"])}


async def _step(
    ctx: duro.OrchestrationContext, key: str, value: int, *, session: str | None = None
) -> int:
    result = await ctx.schedule_activity(step, {"key": key, "value": value}, session=session)
    turn_log.live(ctx, f"after-{key}")
    out: int = result["value"]
    return out


# -- orchestrations ----------------------------------------------------------------------------


@registry.orchestration
async def chain(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    value = seed
    for i in range(CHAIN):
        value = await _step(ctx, f"chain-{i}", value)
    return value


@registry.orchestration
async def fan(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    parts = await ctx.join(
        [ctx.schedule_activity(step, {"key": f"fan-{j}", "value": seed + j}) for j in range(FAN)]
    )
    turn_log.live(ctx, "after-fan")
    return sum(part["value"] for part in parts)


@registry.orchestration
async def timers(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    value = seed
    for i in range(TIMERS):
        await ctx.schedule_timer(TIMER_SECONDS)
        turn_log.live(ctx, f"fired-{i}")
        value = await _step(ctx, f"timer-{i}", value)
    return value


@registry.orchestration
async def events(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    winner, data = await ctx.select(
        ctx.wait_for_event(EVENT_NAME), ctx.schedule_timer(EVENT_FALLBACK_SECONDS)
    )
    turn_log.live(ctx, "after-event")
    if winner != 0:
        raise RuntimeError("the event never arrived")
    return await _step(ctx, "after-event", int(data))


@registry.orchestration
async def parent(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    child: int = await ctx.schedule_sub_orchestration(chain, seed)
    turn_log.live(ctx, "after-child")
    return await _step(ctx, "after-child", child)


@registry.orchestration
async def looping(ctx: duro.OrchestrationContext, arg: dict[str, int]) -> int:
    turn_log.live(ctx, "start")
    value = await _step(ctx, "loop", arg["value"])
    ctx.kv.set("total", ctx.kv.get("total", 0, type=int) + value)
    if arg["left"] > 0:
        ctx.continue_as_new({"value": value, "left": arg["left"] - 1})
    total: int = ctx.kv.get("total", type=int)
    return total


@registry.orchestration
async def retrying(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    result = await ctx.schedule_activity(flaky, {"key": "flaky", "value": seed}, retry=RETRY)
    turn_log.live(ctx, "after-flaky")
    out: int = result["value"]
    return out


@registry.orchestration
async def kv(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    ctx.kv.set("seed", seed)
    first = await _step(ctx, "kv-0", seed)
    ctx.kv.set("first", first)
    second = await _step(ctx, "kv-1", ctx.kv.get("first", type=int))
    ctx.kv.delete("seed")
    return second + len(ctx.kv.keys())


@registry.orchestration
async def sessioned(ctx: duro.OrchestrationContext, seed: int) -> int:
    turn_log.live(ctx, "start")
    session = f"session-{seed % SESSIONS}"
    value = seed
    for i in range(3):
        value = await _step(ctx, f"session-{i}", value, session=session)
    return value


# -- instances and their expected outputs ------------------------------------------------------


def _chain(seed: int) -> int:
    value = seed
    for _ in range(CHAIN):
        value = step_value(value)
    return value


def _looping(seed: int) -> int:
    value, total = seed, 0
    for _ in range(LOOPS + 1):
        value = step_value(value)
        total += value
    return total


def _repeat(times: int) -> Callable[[int], int]:
    def run(seed: int) -> int:
        value = seed
        for _ in range(times):
            value = step_value(value)
        return value

    return run


_EXPECTED: dict[str, Callable[[int], int]] = {
    "chain": _chain,
    "fan": lambda seed: sum(step_value(seed + j) for j in range(FAN)),
    "timers": _repeat(TIMERS),
    "events": lambda seed: step_value(event_data(seed)),
    "parent": lambda seed: step_value(_chain(seed)),
    "looping": _looping,
    "retrying": step_value,
    "kv": lambda seed: step_value(step_value(seed)) + 1,
    "sessioned": _repeat(3),
}


@dataclass(frozen=True)
class Instance:
    instance_id: str
    kind: str
    seed: int

    @property
    def input(self) -> object:
        if self.kind == "looping":
            return {"value": self.seed, "left": LOOPS}
        return self.seed

    @property
    def expected_output(self) -> int:
        return _EXPECTED[self.kind](self.seed)


def event_data(seed: int) -> int:
    return seed * 2 + 1


def instance(n: int, prefix: str = "mix") -> Instance:
    """The ``n``-th instance of a series: kinds cycle, the seed is ``n``."""
    kind = KINDS[n % len(KINDS)]
    return Instance(f"{prefix}-{n:05d}-{kind}", kind, n)


def instances(count: int, prefix: str = "mix") -> list[Instance]:
    """``count`` instances cycling through every kind."""
    return [instance(n, prefix) for n in range(count)]


async def start(client: duro.Client, instance: Instance) -> None:
    """Start it and, for the event kind, raise its event: both are safe to repeat after a
    store error whose outcome is unknown (a lost response)."""
    try:
        await client.start_orchestration(instance.instance_id, instance.kind, instance.input)
    except duro.InstanceAlreadyExistsError:
        pass
    if instance.kind == "events":
        await client.raise_event(instance.instance_id, EVENT_NAME, event_data(instance.seed))
