"""Tiny factories for engine tests: build histories and messages without a store or clock."""

from __future__ import annotations

from typing import Any

import msgspec

from duro._engine import TurnDecision, TurnInput, run_turn
from duro._history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    EventRaised,
    HistoryEvent,
    OrchestrationStarted,
    TimerCreated,
    TimerFired,
)
from duro._messages import (
    ActivityResultMessage,
    AnyOrchestratorMessage,
    CancelOrchestrationMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    StartOrchestrationMessage,
    TimerFiredMessage,
)
from duro._registry import Registry
from duro._status import ErrorCategory, ErrorInfo, ExecutionStatus

INSTANCE = "inst"
T0 = 1_700_000_000_000


def raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


class History:
    """Builds a history with consecutive event ids."""

    def __init__(self) -> None:
        self.events: list[HistoryEvent] = []

    def _add(self, cls: type[Any], **fields: Any) -> History:
        self.events.append(cls(event_id=len(self.events) + 1, ts=fields.pop("ts", T0), **fields))
        return self

    def started(self, name: str = "orch", input: Any = None, version: str = "1.0.0") -> History:
        return self._add(OrchestrationStarted, name=name, version=version, input=raw(input))

    def activity_scheduled(
        self,
        seq: int,
        name: str,
        input: Any = None,
        *,
        tag: str | None = None,
        session: str | None = None,
    ) -> History:
        return self._add(
            ActivityScheduled, seq=seq, name=name, input=raw(input), tag=tag, session=session
        )

    def activity_completed(self, seq: int, result: Any = None) -> History:
        return self._add(ActivityCompleted, seq=seq, result=raw(result))

    def activity_failed(self, seq: int, message: str = "boom") -> History:
        error = ErrorInfo(
            category=ErrorCategory.APPLICATION, error_type="ValueError", message=message
        )
        return self._add(ActivityFailed, seq=seq, error=error)

    def timer_created(self, seq: int, fire_at: int = T0 + 1000) -> History:
        return self._add(TimerCreated, seq=seq, fire_at=fire_at)

    def timer_fired(self, seq: int, ts: int = T0 + 1000) -> History:
        return self._add(TimerFired, seq=seq, ts=ts)

    def event_raised(self, name: str, data: Any = None) -> History:
        return self._add(EventRaised, name=name, data=raw(data))


def start(
    name: str = "orch",
    input: Any = None,
    *,
    version: str | None = None,
    instance_id: str = INSTANCE,
) -> StartOrchestrationMessage:
    return StartOrchestrationMessage(
        instance_id=instance_id, name=name, version=version, input=raw(input)
    )


def completed(
    seq: int, result: Any = None, execution_id: int = 1, *, instance_id: str = INSTANCE
) -> ActivityResultMessage:
    return ActivityResultMessage(
        instance_id=instance_id, execution_id=execution_id, seq=seq, result=raw(result)
    )


def error_info(
    error_type: str = "ValueError",
    message: str = "boom",
    *,
    category: ErrorCategory = ErrorCategory.APPLICATION,
    retryable: bool = True,
    details: str | None = None,
) -> ErrorInfo:
    """An error as an activity worker reports it (``details``: its traceback, if any)."""
    return ErrorInfo(
        category=category,
        error_type=error_type,
        message=message,
        retryable=retryable,
        details=details,
    )


def failed(
    seq: int,
    message: str = "boom",
    error_type: str = "ValueError",
    *,
    execution_id: int = 1,
    instance_id: str = INSTANCE,
    info: ErrorInfo | None = None,
) -> ActivityResultMessage:
    """An activity failure; ``info`` replaces the plain application error built from the rest."""
    return ActivityResultMessage(
        instance_id=instance_id,
        execution_id=execution_id,
        seq=seq,
        error=info or error_info(error_type, message),
    )


def timer_fired(
    seq: int, fire_at: int = T0 + 1000, *, execution_id: int = 1, instance_id: str = INSTANCE
) -> TimerFiredMessage:
    return TimerFiredMessage(
        instance_id=instance_id, execution_id=execution_id, seq=seq, fire_at=fire_at
    )


def event(name: str, data: Any = None, *, instance_id: str = INSTANCE) -> RaiseEventMessage:
    return RaiseEventMessage(instance_id=instance_id, name=name, data=raw(data))


def enqueued(queue: str, data: Any = None, *, instance_id: str = INSTANCE) -> EnqueueEventMessage:
    """A mailbox message, as ``Client.enqueue_event`` sends it."""
    return EnqueueEventMessage(instance_id=instance_id, queue=queue, data=raw(data))


def cancel(reason: str = "stop", *, instance_id: str = INSTANCE) -> CancelOrchestrationMessage:
    return CancelOrchestrationMessage(instance_id=instance_id, reason=reason)


def turn(
    registry: Registry,
    history: History | list[HistoryEvent] | None = None,
    messages: list[AnyOrchestratorMessage] | None = None,
    *,
    now: int = T0,
    status: ExecutionStatus | None = ExecutionStatus.RUNNING,
    final_delivery: bool = False,
) -> TurnDecision:
    """Run one turn from history alone."""
    events = history.events if isinstance(history, History) else list(history or [])
    return run_turn(
        registry,
        TurnInput(
            instance_id=INSTANCE,
            execution_id=1 if events else 0,
            execution_status=status if events else None,
            history=events,
            messages=list(messages or []),
            now_ms=now,
            final_delivery=final_delivery,
        ),
    )


def kinds(decision: TurnDecision) -> list[str]:
    return [type(e).__name__ for e in decision.changes.new_events]
