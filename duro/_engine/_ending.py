"""What the turn that ends an execution sends out: work withdrawn, then the result for the
parent, or the start of the next execution after ``continue_as_new``."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .._history import (
    NULL,
    CarriedEvent,
    ContinuedAsNew,
    OrchestrationCompleted,
    OrchestrationFailed,
    ParentRef,
    Raw,
)
from .._messages import (
    AnyOrchestratorMessage,
    CancelOrchestrationMessage,
    ContinueAsNewMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    ScheduledMessage,
    StartOrchestrationMessage,
    SubOrchestrationResultMessage,
    TimerFiredMessage,
)
from .._records import TurnChanges
from .._status import ExecutionStatus
from ._identity import Identity
from ._steps import ActivityFuture, Step, SubOrchestrationFuture


def withdraw_work(
    turn: TurnChanges, pending: Iterable[Step], turn_first_seq: int, instance_id: str
) -> None:
    """Work scheduled by this very turn is never sent; earlier work still pending is withdrawn."""
    turn.activity_tasks.clear()
    turn.orchestrator_messages = [
        scheduled
        for scheduled in turn.orchestrator_messages
        if not isinstance(scheduled.message, TimerFiredMessage)
        and not (
            isinstance(scheduled.message, StartOrchestrationMessage)
            and scheduled.message.parent is not None
        )
    ]
    for future in pending:
        if future.seq >= turn_first_seq:
            continue
        if isinstance(future, ActivityFuture):
            turn.cancelled_activities.append(future.seq)
        elif isinstance(future, SubOrchestrationFuture):
            turn.orchestrator_messages.append(
                ScheduledMessage(
                    message=CancelOrchestrationMessage(
                        instance_id=future.instance_id, reason=f"parent {instance_id!r} ended"
                    )
                )
            )


RUN_ENDED_QUEUE = "duro:run-ended"
"""The mailbox queue an instance started with ``notify`` reports its end to."""


class RunEnded(msgspec.Struct, frozen=True, kw_only=True):
    """What a run tells the instance it was started for (``notify``) when it ends."""

    instance_id: str
    state: str
    """``"completed"`` or ``"failed"``."""


def report_end(turn: TurnChanges, notify: str | None, instance_id: str) -> None:
    """Tell ``notify`` (if any) that ``instance_id`` ended, with the turn that ends it."""
    if notify is None:
        return
    state = "completed" if turn.execution_status is ExecutionStatus.COMPLETED else "failed"
    turn.orchestrator_messages.append(
        ScheduledMessage(
            message=EnqueueEventMessage(
                instance_id=notify,
                queue=RUN_ENDED_QUEUE,
                data=Raw(msgspec.json.encode(RunEnded(instance_id=instance_id, state=state))),
            )
        )
    )


def report_result(
    turn: TurnChanges,
    ending: OrchestrationCompleted | OrchestrationFailed,
    parent: ParentRef | None,
    instance_id: str,
    notify: str | None = None,
) -> None:
    """Set the final status, send the result to the parent of a sub-orchestration, and tell
    the instance to ``notify`` (a schedule) that this one ended."""
    if isinstance(ending, OrchestrationCompleted):
        turn.execution_status = ExecutionStatus.COMPLETED
        turn.output = bytes(ending.output)
    else:
        turn.execution_status = ExecutionStatus.FAILED
        turn.error = ending.error
    report_end(turn, notify, instance_id)
    if parent is None:
        return
    turn.orchestrator_messages.append(
        ScheduledMessage(
            message=SubOrchestrationResultMessage(
                instance_id=parent.instance_id,
                execution_id=parent.execution_id,
                seq=parent.seq,
                child_instance_id=instance_id,
                result=ending.output if isinstance(ending, OrchestrationCompleted) else NULL,
                error=ending.error if isinstance(ending, OrchestrationFailed) else None,
            )
        )
    )


def continue_as_new(
    turn: TurnChanges,
    ending: ContinuedAsNew,
    identity: Identity,
    parent: ParentRef | None,
    queued: list[CarriedEvent],
    unprocessed: list[AnyOrchestratorMessage],
    traceparent: str | None,
    custom_status: bytes | None = None,
    notify: str | None = None,
) -> None:
    """Start the next execution with what this one leaves: the mailbox messages nobody took
    (``queued``), then the messages that arrived after the end (``unprocessed``). The next
    execution stays in the workflow's trace (``traceparent``) and starts with the custom
    status this one left."""
    turn.execution_status = ExecutionStatus.CONTINUED_AS_NEW
    carried = list(queued)
    # Arrivals this execution never processed go first in line for the next one, ahead of
    # anything enqueued later (re-sending them would put them behind newer messages).
    for message in unprocessed:
        if isinstance(message, EnqueueEventMessage):
            carried.append(CarriedEvent(queue=message.queue, data=message.data))
        elif isinstance(message, RaiseEventMessage):
            carried.append(CarriedEvent(queue=message.name, data=message.data, kind="event"))
    turn.orchestrator_messages.append(
        ScheduledMessage(
            message=ContinueAsNewMessage(
                instance_id=identity.instance_id,
                execution_id=identity.execution_id + 1,
                name=identity.name,
                version=ending.version,
                input=ending.input,
                carried_events=carried,
                parent=parent,
                traceparent=traceparent,
                custom_status=NULL if custom_status is None else Raw(custom_status),
                notify=notify,
            )
        )
    )
    # A cancellation this execution never saw applies to the next one.
    turn.orchestrator_messages.extend(
        ScheduledMessage(message=m)
        for m in unprocessed
        if isinstance(m, CancelOrchestrationMessage)
    )
