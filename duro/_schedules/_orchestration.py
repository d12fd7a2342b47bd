"""The built-in orchestration ``duro:schedule``: one instance per schedule (decision 0008).

Each round it publishes its state as custom status, then waits for whichever comes first: the
timer of the next due time, a control request (pause, resume, trigger) or a run reporting its
end. Runs are detached starts with a predictable id; they report their end through
``OrchestrationStarted.notify``, so ``skip`` and ``buffer_one`` know when a run is over. Every
few rounds it continues as new, carrying its state (and any unread requests) along, so its
history stays short.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._engine._ending import RUN_ENDED_QUEUE, RunEnded
from ._spec import (
    CONTROL_QUEUE,
    Control,
    ScheduleState,
    ScheduleSummary,
    latest_due,
    next_due,
    run_id_of,
)

if TYPE_CHECKING:
    from .._engine import OrchestrationContext

ROUNDS_PER_EXECUTION: Final = 16
"""Rounds (fires, requests, run ends) before ``continue_as_new``: about 100 events."""


def _now(ctx: OrchestrationContext) -> int:
    return _ms(ctx.utc_now())


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def run_schedule(ctx: OrchestrationContext, state: ScheduleState) -> None:
    """Fire the schedule's runs at their due times, forever (until deleted)."""
    if state.after_ms is None:
        state = msgspec.structs.replace(state, after_ms=_now(ctx) - 1)
    for _ in range(ROUNDS_PER_EXECUTION):
        after = state.after_ms if state.after_ms is not None else _now(ctx)
        due = None if state.paused else next_due(state.spec, after)
        ctx.set_custom_status(ScheduleSummary(state=state, next_run_at_ms=due))
        waits: list[Any] = [
            ctx.dequeue_event(CONTROL_QUEUE, type=Control),
            ctx.dequeue_event(RUN_ENDED_QUEUE, type=RunEnded),
        ]
        if due is not None:
            waits.append(ctx.schedule_timer(max(0, due - _now(ctx)) / 1000))
        index, value = await ctx.select(*waits)
        now = _now(ctx)
        if index == 0:
            state = _control(ctx, state, value, now)
        elif index == 1:
            state = _ended(ctx, state, value, now)
        elif due is not None:
            state = _fire(ctx, state, due, now)
    ctx.continue_as_new(state)


def _fire(ctx: OrchestrationContext, state: ScheduleState, due: int, now: int) -> ScheduleState:
    """The timer of ``due`` fired (late, after downtime): one run, for the latest due time
    that has passed; the overlap policy decides whether it starts now."""
    spec = state.spec
    latest = latest_due(spec, due, now)
    state = msgspec.structs.replace(state, after_ms=latest)
    run_id = run_id_of(spec.schedule_id, latest)
    if state.running is None or spec.overlap == "allow":
        return _start(ctx, state, run_id, now)
    if spec.overlap == "buffer_one":
        replaced = 1 if state.buffered is not None else 0
        return msgspec.structs.replace(
            state, buffered=run_id, runs_skipped=state.runs_skipped + replaced
        )
    return msgspec.structs.replace(state, runs_skipped=state.runs_skipped + 1)


def _ended(
    ctx: OrchestrationContext, state: ScheduleState, ended: RunEnded, now: int
) -> ScheduleState:
    if ended.instance_id != state.running:
        return state  # an earlier run (``allow``), or one started before a trigger
    state = msgspec.structs.replace(state, running=None)
    return _start_buffered(ctx, state, now)


def _start_buffered(ctx: OrchestrationContext, state: ScheduleState, now: int) -> ScheduleState:
    if state.buffered is None or state.paused or state.running is not None:
        return state
    run_id = state.buffered
    return _start(ctx, msgspec.structs.replace(state, buffered=None), run_id, now)


def _control(
    ctx: OrchestrationContext, state: ScheduleState, request: Control, now: int
) -> ScheduleState:
    if request.op == "pause":
        return msgspec.structs.replace(state, paused=True)
    if request.op == "resume" and state.paused:
        # Due times that passed while paused are not made up for.
        after = max(state.after_ms or now, now)
        state = msgspec.structs.replace(state, paused=False, after_ms=after)
        return _start_buffered(ctx, state, now)
    if request.op == "trigger" and request.run_id is not None:
        return _start(ctx, state, request.run_id, now)
    return state


def _start(ctx: OrchestrationContext, state: ScheduleState, run_id: str, now: int) -> ScheduleState:
    spec = state.spec
    ctx._start_reporting(
        spec.orchestration,
        spec.input,
        instance_id=run_id,
        version=spec.version,
        notify=ctx.instance_id,
    )
    return msgspec.structs.replace(
        state,
        running=run_id,
        last_run_id=run_id,
        last_run_at_ms=now,
        runs_started=state.runs_started + 1,
    )
