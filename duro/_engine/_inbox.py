"""The inbox: what each queue message becomes in history, if anything.

A completion becomes an event only if it is for this execution and for a step still waiting
for it; a late timer, a result for a cancelled step or a redelivered message is dropped here,
before it is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._history import (
    ActivityCompleted,
    ActivityFailed,
    CancelRequested,
    EventQueued,
    EventRaised,
    HistoryEvent,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    TimerFired,
)
from .._messages import (
    ActivityResultMessage,
    AnyOrchestratorMessage,
    CancelOrchestrationMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    SubOrchestrationResultMessage,
    TimerFiredMessage,
)
from ._identity import Identity
from ._steps import ActivityFuture, Step, Steps, SubOrchestrationFuture, TimerFuture


class Inbox:
    """Turns queue messages into history events, one method per message kind."""

    def __init__(self, identity: Identity, steps: Steps) -> None:
        # Completions for another execution of the instance are stale.
        self._identity = identity
        # Completions for a step that is unknown, done or of another kind are dropped.
        self._steps = steps

    def event_for(self, message: AnyOrchestratorMessage) -> HistoryEvent | None:
        """The event a message becomes, or None if it is stale, duplicate or unknown."""
        convert = _EVENT_FOR.get(type(message))
        return None if convert is None else convert(self, message)

    def _awaited_step(self, execution_id: int, seq: int) -> Step | None:
        """The step a completion is for, unless it is another execution's or already done."""
        if execution_id != self._identity.execution_id:
            return None
        future = self._steps.get(seq)
        return None if future is None or future.done else future

    def _activity_result(self, message: ActivityResultMessage) -> HistoryEvent | None:
        if not isinstance(self._awaited_step(message.execution_id, message.seq), ActivityFuture):
            return None
        if message.error is not None:
            return ActivityFailed(
                event_id=0,
                ts=0,
                seq=message.seq,
                error=message.error,
                heartbeat_details=message.heartbeat_details,
            )
        return ActivityCompleted(event_id=0, ts=0, seq=message.seq, result=message.result)

    def _timer_fired(self, message: TimerFiredMessage) -> HistoryEvent | None:
        if not isinstance(self._awaited_step(message.execution_id, message.seq), TimerFuture):
            return None
        return TimerFired(event_id=0, ts=0, seq=message.seq)

    def _sub_orchestration_result(
        self, message: SubOrchestrationResultMessage
    ) -> HistoryEvent | None:
        future = self._awaited_step(message.execution_id, message.seq)
        if not isinstance(future, SubOrchestrationFuture):
            return None
        if message.error is not None:
            return SubOrchestrationFailed(event_id=0, ts=0, seq=message.seq, error=message.error)
        return SubOrchestrationCompleted(event_id=0, ts=0, seq=message.seq, result=message.result)

    def _raise_event(self, message: RaiseEventMessage) -> HistoryEvent:
        return EventRaised(event_id=0, ts=0, name=message.name, data=message.data)

    def _enqueue_event(self, message: EnqueueEventMessage) -> HistoryEvent:
        return EventQueued(event_id=0, ts=0, queue=message.queue, data=message.data)

    def _cancel(self, message: CancelOrchestrationMessage) -> HistoryEvent:
        return CancelRequested(event_id=0, ts=0, reason=message.reason)


# Keyed by exact type: messages are leaf Structs of a closed union. Not listed: start and
# continue-as-new messages, which run_turn uses to create an execution and never applies to one
# (it answers a duplicate start itself).
_EVENT_FOR: dict[type[AnyOrchestratorMessage], Callable[[Inbox, Any], HistoryEvent | None]] = {
    ActivityResultMessage: Inbox._activity_result,
    TimerFiredMessage: Inbox._timer_fired,
    SubOrchestrationResultMessage: Inbox._sub_orchestration_result,
    RaiseEventMessage: Inbox._raise_event,
    EnqueueEventMessage: Inbox._enqueue_event,
    CancelOrchestrationMessage: Inbox._cancel,
}
