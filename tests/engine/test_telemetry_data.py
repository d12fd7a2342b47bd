"""What the engine hands the shell for telemetry: the workflow's trace carried through data, how
many events a turn replayed, and how activity attempts ended. From history alone."""

from __future__ import annotations

import msgspec

import duro
from duro._engine import Commit, TurnDecision
from duro._history import OrchestrationStarted
from duro._messages import ContinueAsNewMessage, StartOrchestrationMessage

from .histories import T0, History, cancel, completed, failed, start, timer_fired, turn

registry = duro.Registry()
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

FAST_RETRY = duro.RetryPolicy(max_attempts=3, initial_interval=0)
TIMEOUT_RETRY = duro.RetryPolicy(max_attempts=2, initial_interval=0, attempt_timeout=5)


@registry.activity
async def step(ctx: duro.ActivityContext, x: int) -> int:
    return x


@registry.orchestration
async def chain(ctx: duro.OrchestrationContext, x: int) -> int:
    first: int = await ctx.schedule_activity(step, x)
    return first + await ctx.schedule_activity(step, first)


@registry.orchestration
async def parent(ctx: duro.OrchestrationContext, x: int) -> int:
    child: int = await ctx.schedule_sub_orchestration(chain, x, instance_id="child")
    return child


@registry.orchestration
async def forever(ctx: duro.OrchestrationContext, x: int) -> None:
    await ctx.schedule_activity(step, x)
    ctx.continue_as_new(x + 1)


@registry.orchestration
async def retried(ctx: duro.OrchestrationContext, x: int) -> int:
    value: int = await ctx.schedule_activity(step, x, retry=FAST_RETRY)
    return value


@registry.orchestration
async def timed(ctx: duro.OrchestrationContext, x: int) -> int:
    value: int = await ctx.schedule_activity(step, x, retry=TIMEOUT_RETRY)
    return value


@registry.orchestration
async def racing(ctx: duro.OrchestrationContext, x: int) -> int:
    _, value = await ctx.select(ctx.schedule_activity(step, x), ctx.schedule_activity(step, x + 1))
    return int(value)


def traced_start(name: str, input: int) -> StartOrchestrationMessage:
    return msgspec.structs.replace(start(name, input), traceparent=TRACE)


def traced_history(name: str) -> History:
    history = History()
    history._add(OrchestrationStarted, name=name, version="1.0.0", input=b"1", traceparent=TRACE)
    return history


def _commit(decision: TurnDecision) -> Commit:
    assert isinstance(decision, Commit), decision
    return decision


def outcomes(decision: TurnDecision) -> list[tuple[str, str]]:
    return [(name, outcome.value) for name, outcome in _commit(decision).attempts]


def test_start_records_the_callers_trace_and_stamps_it_on_the_work_it_sends() -> None:
    decision = _commit(turn(registry, None, [traced_start("chain", 1)]))
    started = decision.changes.new_events[0]
    assert isinstance(started, OrchestrationStarted)
    assert started.traceparent == TRACE
    [task] = decision.changes.activity_tasks
    assert task.traceparent == TRACE
    assert task.scheduled_at_ms == T0


def test_a_later_turn_takes_the_trace_from_recorded_history() -> None:
    history = traced_history("chain")
    history.activity_scheduled(1, "step", 1)
    decision = _commit(turn(registry, history, [completed(1, 1)], now=T0 + 5))
    [task] = decision.changes.activity_tasks
    assert (task.traceparent, task.scheduled_at_ms) == (TRACE, T0 + 5)


def test_an_untraced_start_sends_untraced_work() -> None:
    decision = _commit(turn(registry, None, [start("chain", 1)]))
    assert decision.changes.activity_tasks[0].traceparent is None
    assert b"traceparent" not in msgspec.json.encode(decision.changes.new_events[0])


def test_sub_orchestration_and_continue_as_new_stay_in_the_workflows_trace() -> None:
    child_start = _commit(turn(registry, None, [traced_start("parent", 1)]))
    [scheduled] = child_start.changes.orchestrator_messages
    assert isinstance(scheduled.message, StartOrchestrationMessage)
    assert scheduled.message.traceparent == TRACE

    history = traced_history("forever")
    history.activity_scheduled(1, "step", 1)
    ending = _commit(turn(registry, history, [completed(1, 1)]))
    [next_start] = ending.changes.orchestrator_messages
    assert isinstance(next_start.message, ContinueAsNewMessage)
    assert next_start.message.traceparent == TRACE


def test_replayed_events_counts_history_replayed_without_a_cached_execution() -> None:
    first = _commit(turn(registry, None, [start("chain", 1)]))
    assert first.replayed_events == 0
    history = History().started("chain", 1).activity_scheduled(1, "step", 1)
    assert _commit(turn(registry, history, [completed(1, 1)])).replayed_events == 2


def test_completed_and_failed_attempts_are_noted_once_never_on_replay() -> None:
    history = History().started("chain", 1).activity_scheduled(1, "step", 1)
    assert outcomes(turn(registry, history, [completed(1, 1)])) == [("step", "completed")]
    history.activity_completed(1, 1).activity_scheduled(2, "step", 1)
    # The first attempt's completion is replayed here: only the new failure is noted.
    assert outcomes(turn(registry, history, [failed(2)])) == [("step", "failed")]


def test_a_failure_the_retry_policy_retries_is_noted_as_retried() -> None:
    history = History().started("retried", 1).activity_scheduled(1, "step", 1)
    decision = turn(registry, history, [failed(1)])
    assert outcomes(decision) == [("step", "retried")]
    history.activity_failed(1).activity_scheduled(2, "step", 1)
    history.events[-1] = msgspec.structs.replace(history.events[-1], attempt=2)
    assert outcomes(turn(registry, history, [completed(2, 7)])) == [("step", "completed")]


def test_an_attempt_past_its_timeout_is_noted_as_timed_out() -> None:
    history = History().started("timed", 1).activity_scheduled(1, "step", 1)
    history.timer_created(2, fire_at=T0 + 5000)
    decision = turn(registry, history, [timer_fired(2, T0 + 5000)], now=T0 + 5000)
    assert outcomes(decision) == [("step", "timed_out")]


def test_a_select_loser_is_noted_as_cancelled() -> None:
    history = History().started("racing", 1)
    history.activity_scheduled(1, "step", 1).activity_scheduled(2, "step", 2)
    decision = turn(registry, history, [completed(2, 2)])
    assert sorted(outcomes(decision)) == [("step", "cancelled"), ("step", "completed")]


def test_work_withdrawn_when_the_execution_ends_is_noted_as_cancelled() -> None:
    history = History().started("racing", 1)
    history.activity_scheduled(1, "step", 1).activity_scheduled(2, "step", 2)
    decision = turn(registry, history, [cancel("stop")])
    assert outcomes(decision) == [("step", "cancelled"), ("step", "cancelled")]
