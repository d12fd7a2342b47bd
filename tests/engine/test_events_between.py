"""Orchestration-to-orchestration events and ``get_custom_status``, from history alone."""

from __future__ import annotations

from typing import Any

import pytest

import duro
from duro._engine import run_turn
from duro._engine._turn import TurnInput
from duro._history import EventSent
from duro._messages import ContinueAsNewMessage, EnqueueEventMessage, RaiseEventMessage
from duro._status import ErrorCategory, ExecutionStatus

from .histories import INSTANCE, T0, event, kinds, start, turn

registry = duro.Registry()


@registry.orchestration
async def notifier(ctx: duro.OrchestrationContext, target: str) -> str:
    ctx.raise_event(target, "ready", {"from": ctx.instance_id})
    ctx.enqueue_event(target, "log", "sent")
    return await ctx.wait_for_event("ack")


@registry.orchestration
async def bad_target(ctx: duro.OrchestrationContext, _: None) -> None:
    ctx.raise_event("not a valid id!", "ready")


@registry.orchestration
async def status_reader(ctx: duro.OrchestrationContext, n: int) -> Any:
    seen = ctx.get_custom_status()
    ctx.set_custom_status({"n": n})
    after = ctx.get_custom_status()
    if n < 2:
        ctx.continue_as_new(n + 1)
    return {"seen": seen, "after": after, "typed": ctx.get_custom_status(type=dict[str, int])}


def _sent(decision: Any) -> list[RaiseEventMessage | EnqueueEventMessage]:
    return [
        s.message
        for s in decision.changes.orchestrator_messages
        if isinstance(s.message, RaiseEventMessage | EnqueueEventMessage)
    ]


def test_raise_and_enqueue_event_go_out_with_the_turn_that_records_them() -> None:
    decision = turn(registry, None, [start("notifier", "other")])

    assert kinds(decision) == ["OrchestrationStarted", "EventSent", "EventSent"]
    sent = _sent(decision)
    assert [type(m).__name__ for m in sent] == ["RaiseEventMessage", "EnqueueEventMessage"]
    raised, queued = sent
    assert isinstance(raised, RaiseEventMessage) and isinstance(queued, EnqueueEventMessage)
    assert (raised.instance_id, raised.name, bytes(raised.data)) == (
        "other",
        "ready",
        b'{"from":"inst"}',
    )
    assert (queued.instance_id, queued.queue, bytes(queued.data)) == ("other", "log", b'"sent"')


def test_replay_matches_the_sent_events_and_sends_nothing_again() -> None:
    first = turn(registry, None, [start("notifier", "other")])
    history = first.changes.new_events

    second = turn(registry, history, [event("ack", "ok")])

    assert _sent(second) == []
    assert second.changes.execution_status is ExecutionStatus.COMPLETED


def test_a_different_target_on_replay_is_nondeterminism() -> None:
    first = turn(registry, None, [start("notifier", "other")])
    history = [
        e.__class__(**{**_fields(e), "instance_id": "elsewhere"}) if isinstance(e, EventSent) else e
        for e in first.changes.new_events
    ]

    decision = turn(registry, history, [event("ack", "ok")])

    assert decision.changes.execution_status is ExecutionStatus.FAILED
    assert decision.changes.error is not None
    assert decision.changes.error.error_type == "NondeterminismError"
    assert "raise_event('other', 'ready'" in decision.changes.error.message


def _fields(event: EventSent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


def test_an_invalid_target_fails_the_orchestration_with_the_reason() -> None:
    decision = turn(registry, None, [start("bad_target")])

    assert decision.changes.execution_status is ExecutionStatus.FAILED
    assert decision.changes.error is not None
    assert decision.changes.error.category is ErrorCategory.APPLICATION
    assert "not a valid id!" in decision.changes.error.message


def test_get_custom_status_reads_what_was_set_and_carries_across_continue_as_new() -> None:
    first = turn(registry, None, [start("status_reader", 1)])
    assert first.changes.execution_status is ExecutionStatus.CONTINUED_AS_NEW
    [carry] = [
        s.message
        for s in first.changes.orchestrator_messages
        if isinstance(s.message, ContinueAsNewMessage)
    ]
    assert bytes(carry.custom_status) == b'{"n":1}'

    second = run_turn(
        registry,
        TurnInput(
            instance_id=INSTANCE,
            execution_id=1,
            execution_status=ExecutionStatus.CONTINUED_AS_NEW,
            history=first.changes.new_events,
            messages=[carry],
            now_ms=T0,
        ),
    )

    assert second.changes.execution_status is ExecutionStatus.COMPLETED
    assert second.changes.output == b'{"seen":{"n":1},"after":{"n":2},"typed":{"n":2}}'


@pytest.mark.parametrize("n", [5])
def test_get_custom_status_is_none_before_anything_was_set(n: int) -> None:
    decision = turn(registry, None, [start("status_reader", n)])

    assert decision.changes.output == b'{"seen":null,"after":{"n":5},"typed":{"n":5}}'
