"""Engine behaviour from history alone: no store, no clock, no sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import duro
from duro._engine import Defer, DeferReason
from duro._history import (
    ActivityScheduled,
    OrchestrationChained,
    OrchestrationCompleted,
    OrchestrationFailed,
    SubOrchestrationScheduled,
    TaskCancelled,
)
from duro._messages import ContinueAsNewMessage
from duro._status import ErrorCategory, ExecutionStatus

from .histories import (
    T0,
    History,
    cancel,
    completed,
    event,
    failed,
    kinds,
    raw,
    start,
    timer_fired,
    turn,
)

registry = duro.Registry()
calls: list[str] = []


@registry.activity
async def greet(ctx: duro.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@registry.activity
async def charge(ctx: duro.ActivityContext, amount: int) -> int:
    return amount


@registry.orchestration
async def orch(ctx: duro.OrchestrationContext, name: str) -> str:
    return await ctx.schedule_activity(greet, name)


@registry.orchestration
async def replay_probe(ctx: duro.OrchestrationContext, _: None) -> list[bool]:
    seen = [ctx.is_replaying]
    await ctx.schedule_activity(greet, "a")
    seen.append(ctx.is_replaying)
    await ctx.schedule_activity(greet, "b")
    seen.append(ctx.is_replaying)
    return seen


@registry.orchestration
async def pair(ctx: duro.OrchestrationContext, _: None) -> list[Any]:
    return await ctx.join([ctx.schedule_activity(greet, "a"), ctx.schedule_activity(charge, 2)])


@registry.orchestration
async def race(ctx: duro.OrchestrationContext, _: None) -> list[Any]:
    index, value = await ctx.select(ctx.schedule_activity(greet, "slow"), ctx.schedule_timer(1))
    return [index, value]


def test_fresh_start_records_started_and_schedules_the_first_activity() -> None:
    decision = turn(registry, None, [start("orch", "Ada")])
    assert kinds(decision) == ["OrchestrationStarted", "ActivityScheduled"]
    assert decision.changes.execution_status is ExecutionStatus.RUNNING
    [task] = decision.changes.activity_tasks
    assert (task.name, task.seq, msgspec.json.decode(task.input)) == ("greet", 1, "Ada")


def test_completion_resumes_code_and_completes_without_rescheduling() -> None:
    history = History().started("orch", "Ada").activity_scheduled(1, "greet", "Ada")
    decision = turn(registry, history, [completed(1, "Hello, Ada!")])
    assert kinds(decision) == ["ActivityCompleted", "OrchestrationCompleted"]
    assert decision.changes.activity_tasks == []
    assert decision.changes.output == b'"Hello, Ada!"'


def test_replayed_steps_return_recorded_results_and_is_replaying_flips_at_the_end() -> None:
    history = (
        History()
        .started("replay_probe")
        .activity_scheduled(1, "greet", "a")
        .activity_completed(1, "x")
        .activity_scheduled(2, "greet", "b")
    )
    decision = turn(registry, history, [completed(2, "y")])
    assert decision.changes.execution_status is ExecutionStatus.COMPLETED
    assert msgspec.json.decode(decision.changes.output) == [True, True, False]


def test_join_returns_results_in_argument_order_whatever_the_completion_order() -> None:
    history = (
        History()
        .started("pair")
        .activity_scheduled(1, "greet", "a")
        .activity_scheduled(2, "charge", 2)
    )
    decision = turn(registry, history, [completed(2, 2), completed(1, "Hello, a!")])
    assert msgspec.json.decode(decision.changes.output) == ["Hello, a!", 2]


def test_join_fails_with_the_first_failure_in_history_order() -> None:
    history = (
        History()
        .started("pair")
        .activity_scheduled(1, "greet", "a")
        .activity_scheduled(2, "charge", 2)
    )
    decision = turn(registry, history, [failed(2, "card declined"), failed(1, "first?")])
    assert decision.changes.execution_status is ExecutionStatus.FAILED
    assert decision.changes.error is not None
    assert "card declined" in decision.changes.error.message


def test_select_returns_first_completion_in_history_order() -> None:
    history = History().started("race").activity_scheduled(1, "greet", "slow").timer_created(2)
    decision = turn(registry, history, [timer_fired(2), completed(1, "late")])
    assert msgspec.json.decode(decision.changes.output) == [1, None]


def test_select_loser_activity_is_cancelled_and_withdrawn() -> None:
    history = History().started("race").activity_scheduled(1, "greet", "slow").timer_created(2)
    decision = turn(registry, history, [timer_fired(2)])
    cancelled = [e for e in decision.changes.new_events if isinstance(e, TaskCancelled)]
    assert [c.target for c in cancelled] == [1]
    assert decision.changes.cancelled_activities == [1]


def test_select_replay_reproduces_the_recorded_cancellation() -> None:
    first = History().started("race").activity_scheduled(1, "greet", "slow").timer_created(2)
    decision = turn(registry, first, [timer_fired(2)])
    full = first.events + decision.changes.new_events[:-1]  # drop the terminal event
    replayed = turn(registry, full, [])
    assert replayed.changes.execution_status is ExecutionStatus.COMPLETED
    assert replayed.changes.cancelled_activities == []


@pytest.mark.parametrize(
    ("history", "recorded", "requested"),
    [
        (
            History().started("orch", "Ada").activity_scheduled(1, "charge", 5),
            "activity 'charge'",
            "activity 'greet'",
        ),
        (History().started("orch", "Ada").timer_created(1), "a timer", "activity 'greet'"),
        (
            History()
            .started("orch", "Ada")
            .activity_scheduled(1, "greet", "Ada")
            .activity_completed(1, "hi")
            .activity_scheduled(2, "greet", "again"),
            "activity 'greet'",
            "nothing (the code already ended)",
        ),
    ],
    ids=["different-activity", "timer-instead-of-activity", "history-continues-after-end"],
)
def test_nondeterminism_fails_the_instance_naming_position_and_both_sides(
    history: History, recorded: str, requested: str
) -> None:
    decision = turn(registry, history, [])
    assert decision.changes.execution_status is ExecutionStatus.FAILED
    error = decision.changes.error
    assert error is not None
    assert error.category is ErrorCategory.CONFIGURATION
    assert error.error_type == "NondeterminismError"
    assert "'inst'" in error.message
    assert recorded in error.message and requested in error.message


def test_nondeterminism_when_history_has_a_step_the_code_no_longer_makes() -> None:
    waits = duro.Registry()

    @waits.orchestration(name="orch")
    async def changed(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("go")

    history = History().started("orch").activity_scheduled(1, "greet", "x")
    decision = turn(waits, history, [])
    assert decision.changes.error is not None
    assert "no further durable call" in decision.changes.error.message
    assert "position 2" in decision.changes.error.message


def test_nondeterminism_when_code_schedules_extra_steps_before_a_recorded_completion() -> None:
    extra = duro.Registry()
    extra.activity(greet)

    @extra.orchestration(name="orch")
    async def eager(ctx: duro.OrchestrationContext, _: None) -> None:
        first = ctx.schedule_activity("greet", "a")
        ctx.schedule_activity("greet", "b")  # new code: scheduled before awaiting the first
        await first

    history = (
        History()
        .started("orch")
        .activity_scheduled(1, "greet", "a")
        .activity_completed(1, "x")
        .activity_scheduled(2, "greet", "b")
    )
    decision = turn(extra, history, [])
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "NondeterminismError"
    assert "position 3" in decision.changes.error.message


def test_continue_as_new_ends_the_execution_at_once_and_carries_the_input() -> None:
    reg = duro.Registry()
    after: list[str] = []

    @reg.orchestration
    async def loop(ctx: duro.OrchestrationContext, n: int) -> None:
        ctx.continue_as_new(n + 1)
        after.append("ran")  # pragma: no cover - must never run

    decision = turn(reg, None, [start("loop", 1)])
    assert kinds(decision) == ["OrchestrationStarted", "ContinuedAsNew"]
    assert decision.changes.execution_status is ExecutionStatus.CONTINUED_AS_NEW
    [scheduled] = decision.changes.orchestrator_messages
    message = scheduled.message
    assert isinstance(message, ContinueAsNewMessage)
    assert (message.execution_id, msgspec.json.decode(message.input)) == (2, 2)
    assert after == []


def test_cancel_request_fails_with_cancelled_and_withdraws_outstanding_activities() -> None:
    history = History().started("orch", "Ada").activity_scheduled(1, "greet", "Ada")
    decision = turn(registry, history, [cancel("user asked")])
    assert kinds(decision) == ["CancelRequested", "OrchestrationFailed"]
    assert decision.changes.error is not None
    assert decision.changes.error.category is ErrorCategory.CANCELLED
    assert decision.changes.cancelled_activities == [1]


def test_awaiting_asyncio_sleep_fails_with_a_configuration_error() -> None:
    reg = duro.Registry()

    @reg.orchestration
    async def sleepy(ctx: duro.OrchestrationContext, _: None) -> None:
        await asyncio.sleep(0)

    decision = turn(reg, None, [start("sleepy")])
    assert decision.changes.execution_status is ExecutionStatus.FAILED
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "NonDurableAwaitError"
    assert decision.changes.error.category is ErrorCategory.CONFIGURATION


def test_an_orchestration_this_worker_lacks_is_left_for_another_worker() -> None:
    decision = turn(registry, None, [start("nope")])
    assert decision == Defer(
        DeferReason.NOT_REGISTERED, "orchestration 'nope' is not registered here"
    )


def test_on_its_last_delivery_an_unregistered_orchestration_fails_with_a_configuration_error() -> (
    None
):
    decision = turn(registry, None, [start("nope")], final_delivery=True)
    assert kinds(decision) == ["OrchestrationStarted", "OrchestrationFailed"]
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "UnregisteredError"


def test_unknown_version_of_a_known_orchestration_is_left_for_another_worker() -> None:
    history = History().started("orch", "Ada", version="9.9.9")
    decision = turn(registry, history, [completed(1, "x")])
    assert decision == Defer(
        DeferReason.NOT_REGISTERED, "orchestration version '9.9.9' of 'orch' is not registered here"
    )
    final = turn(registry, history, [completed(1, "x")], final_delivery=True)
    assert final.changes.error is not None
    assert final.changes.error.error_type == "UnregisteredError"


def test_activity_failure_raises_activity_failed_that_code_can_catch() -> None:
    reg = duro.Registry()
    reg.activity(greet)

    @reg.orchestration
    async def careful(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            await ctx.schedule_activity(greet, "x")
        except duro.ActivityFailedError as exc:
            return f"{exc.error_type}:{exc.error_message}"
        return "no error"

    history = History().started("careful").activity_scheduled(1, "greet", "x")
    decision = turn(reg, history, [failed(1, "bad input", "KeyError")])
    assert msgspec.json.decode(decision.changes.output) == "KeyError:bad input"


def test_events_raised_before_the_wait_are_buffered_in_history() -> None:
    reg = duro.Registry()

    @reg.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> list[Any]:
        await ctx.schedule_timer(1)
        return [await ctx.wait_for_event("go"), await ctx.wait_for_event("go")]

    history = History().started("waiter").timer_created(1)
    decision = turn(reg, history, [event("go", 1), event("go", 2), timer_fired(1)])
    assert msgspec.json.decode(decision.changes.output) == [1, 2]


def test_completions_for_another_execution_are_dropped() -> None:
    history = History().started("orch", "Ada").activity_scheduled(1, "greet", "Ada")
    decision = turn(registry, history, [completed(1, "stale", execution_id=7)])
    assert decision.changes.new_events == []
    assert decision.changes.execution_status is ExecutionStatus.RUNNING


def test_duplicate_completion_is_recorded_once() -> None:
    history = (
        History()
        .started("pair")
        .activity_scheduled(1, "greet", "a")
        .activity_scheduled(2, "charge", 2)
    )
    decision = turn(registry, history, [completed(1, "a"), completed(1, "a-again")])
    assert kinds(decision) == ["ActivityCompleted"]


def test_timer_keeps_its_recorded_fire_time_on_replay() -> None:
    reg = duro.Registry()

    @reg.orchestration
    async def sleeper(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_timer(3600)

    first = turn(reg, None, [start("sleeper")], now=T0)
    [scheduled] = first.changes.orchestrator_messages
    visible_at = scheduled.visible_at_ms
    assert visible_at == T0 + 3_600_000
    history = first.changes.new_events
    second = turn(reg, history, [timer_fired(1, T0 + 3_600_000)], now=T0 + 3_600_000)
    assert kinds(second) == ["TimerFired", "OrchestrationCompleted"]


def test_new_guid_and_utc_now_are_stable_across_replay() -> None:
    reg = duro.Registry()
    reg.activity(greet)

    @reg.orchestration
    async def ids(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        first = str(ctx.new_guid())
        now = ctx.utc_now().isoformat()
        await ctx.schedule_activity(greet, "x")
        return [first, now]

    one = turn(reg, None, [start("ids")], now=T0)
    done = turn(reg, one.changes.new_events, [completed(1, "x")], now=T0 + 5000)
    again = turn(reg, one.changes.new_events, [completed(1, "x")], now=T0 + 9000)
    assert done.changes.output == again.changes.output
    assert msgspec.json.decode(done.changes.output)[1].startswith("2023-11-14T22:13:20")


def test_orchestration_failure_carries_the_error_type_and_message() -> None:
    reg = duro.Registry()

    @reg.orchestration
    async def broken(ctx: duro.OrchestrationContext, _: None) -> None:
        raise KeyError("missing")

    decision = turn(reg, None, [start("broken")])
    assert isinstance(decision.changes.new_events[-1], OrchestrationFailed)
    error = decision.changes.error
    assert error is not None
    assert (error.category, error.error_type) == (ErrorCategory.APPLICATION, "KeyError")


def test_actions_scheduled_in_the_final_turn_are_not_dispatched() -> None:
    reg = duro.Registry()
    reg.activity(greet)

    @reg.orchestration
    async def fire_and_return(ctx: duro.OrchestrationContext, _: None) -> str:
        ctx.schedule_activity(greet, "never awaited")
        return "done"

    decision = turn(reg, None, [start("fire_and_return")])
    assert isinstance(decision.changes.new_events[-1], OrchestrationCompleted)
    assert any(isinstance(e, ActivityScheduled) for e in decision.changes.new_events)
    assert decision.changes.activity_tasks == []


def test_same_activity_with_different_input_is_nondeterminism() -> None:
    history = History().started("orch", "Ada").activity_scheduled(1, "greet", "Grace")
    decision = turn(registry, history, [])
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "NondeterminismError"
    assert '"Grace"' in decision.changes.error.message and '"Ada"' in decision.changes.error.message


@pytest.mark.parametrize(
    ("recorded", "requested", "recorded_routing", "requested_routing"),
    [
        ({"tag": "gpu"}, {}, " (tag 'gpu')", ""),
        ({}, {"session": "s-2"}, "", " (session 's-2')"),
        (
            {"tag": "gpu", "session": "s-1"},
            {"tag": "gpu", "session": "s-2"},
            " (tag 'gpu', session 's-1')",
            " (tag 'gpu', session 's-2')",
        ),
    ],
    ids=["tag-dropped", "session-added", "session-changed"],
)
def test_nondeterminism_in_tag_or_session_names_them_on_both_sides(
    recorded: dict[str, str],
    requested: dict[str, str],
    recorded_routing: str,
    requested_routing: str,
) -> None:
    routed = duro.Registry()
    routed.activity(greet)

    @routed.orchestration(name="orch")
    async def rerouted(ctx: duro.OrchestrationContext, name: str) -> str:
        return await ctx.schedule_activity("greet", name, **requested)  # type: ignore[arg-type]

    history = History().started("orch", "Ada").activity_scheduled(1, "greet", "Ada", **recorded)
    error = turn(routed, history, []).changes.error
    assert error is not None and error.error_type == "NondeterminismError"
    assert error.details is not None
    sides = msgspec.json.decode(error.details)
    assert sides["recorded"] == f"activity 'greet' with input \"Ada\"{recorded_routing}"
    assert sides["requested"] == f"activity 'greet' with input \"Ada\"{requested_routing}"
    assert sides["recorded"] in error.message and sides["requested"] in error.message


def test_sub_orchestrations_that_differ_only_in_input_show_both_inputs() -> None:
    children = duro.Registry()

    @children.orchestration
    async def child(ctx: duro.OrchestrationContext, n: int) -> int:
        return n

    @children.orchestration(name="orch")
    async def parent(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_sub_orchestration(child, 2, instance_id="kid")

    history = History().started("orch")
    history._add(SubOrchestrationScheduled, seq=1, name="child", instance_id="kid", input=raw(1))
    error = turn(children, history, []).changes.error
    assert error is not None and error.details is not None
    sides = msgspec.json.decode(error.details)
    assert sides["recorded"] == "sub-orchestration 'child' (kid) with input 1"
    assert sides["requested"] == "sub-orchestration 'child' (kid) with input 2"


def test_detached_starts_that_differ_only_in_input_show_both_inputs() -> None:
    starts = duro.Registry()

    @starts.orchestration
    async def audit(ctx: duro.OrchestrationContext, what: str) -> None:
        return None

    @starts.orchestration(name="orch")
    async def parent(ctx: duro.OrchestrationContext, _: None) -> None:
        ctx.start_orchestration(audit, "new text", instance_id="log-1")
        await ctx.wait_for_event("never")

    history = History().started("orch")
    history._add(
        OrchestrationChained, seq=1, name="audit", instance_id="log-1", input=raw("old text")
    )
    error = turn(starts, history, []).changes.error
    assert error is not None and error.details is not None
    sides = msgspec.json.decode(error.details)
    assert sides["recorded"] == "detached start of 'audit' (log-1) with input \"old text\""
    assert sides["requested"] == "detached start of 'audit' (log-1) with input \"new text\""
