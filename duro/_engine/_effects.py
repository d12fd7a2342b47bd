"""What recording an action sends out: work items, timers, child starts, cancellations.

Side effects happen only for newly recorded actions, never on replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._history import (
    ActivityScheduled,
    CustomStatusSet,
    EventSent,
    HistoryEvent,
    KvCleared,
    KvDeleted,
    KvSet,
    OrchestrationChained,
    ParentRef,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
)
from .._messages import (
    ActivityTask,
    CancelOrchestrationMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    ScheduledMessage,
    StartOrchestrationMessage,
    TimerFiredMessage,
)
from .._records import KvChange, TurnChanges
from ._identity import Identity
from ._steps import ActivityFuture, Steps, SubOrchestrationFuture


class SideEffects:
    """Adds to a turn what each newly recorded action sends out, one method per action kind."""

    def __init__(self, identity: Identity, steps: Steps) -> None:
        # Stamped on work items and messages: where results come back to.
        self._identity = identity
        # Tells what a cancellation withdraws: an activity's work item or a child instance.
        self._steps = steps
        # The workflow's trace (``OrchestrationStarted.traceparent``), stamped on the work
        # this execution sends out so it stays in that trace; set when the start is applied.
        self.traceparent: str | None = None

    def record(self, turn: TurnChanges, action: HistoryEvent) -> None:
        effect = _EFFECTS.get(type(action))
        if effect is not None:
            effect(self, turn, action)

    def _activity_scheduled(self, turn: TurnChanges, action: ActivityScheduled) -> None:
        identity = self._identity
        turn.activity_tasks.append(
            ActivityTask(
                instance_id=identity.instance_id,
                execution_id=identity.execution_id,
                seq=action.seq,
                name=action.name,
                input=action.input,
                attempt=action.attempt,
                session=action.session,
                tag=action.tag,
                orchestration_name=identity.name,
                orchestration_version=identity.version,
                traceparent=self.traceparent,
                scheduled_at_ms=action.ts,
                heartbeat_timeout_ms=action.heartbeat_timeout_ms,
                heartbeat_details=action.heartbeat_details,
            )
        )

    def _timer_created(self, turn: TurnChanges, action: TimerCreated) -> None:
        turn.orchestrator_messages.append(
            ScheduledMessage(
                message=TimerFiredMessage(
                    instance_id=self._identity.instance_id,
                    execution_id=self._identity.execution_id,
                    seq=action.seq,
                    fire_at=action.fire_at,
                ),
                visible_at_ms=action.fire_at,
            )
        )

    def _sub_orchestration_scheduled(
        self, turn: TurnChanges, action: SubOrchestrationScheduled
    ) -> None:
        parent = ParentRef(
            instance_id=self._identity.instance_id,
            execution_id=self._identity.execution_id,
            seq=action.seq,
        )
        turn.orchestrator_messages.append(
            ScheduledMessage(
                message=StartOrchestrationMessage(
                    instance_id=action.instance_id,
                    name=action.name,
                    version=action.version,
                    input=action.input,
                    parent=parent,
                    traceparent=self.traceparent,
                )
            )
        )

    def _orchestration_chained(self, turn: TurnChanges, action: OrchestrationChained) -> None:
        turn.orchestrator_messages.append(
            ScheduledMessage(
                message=StartOrchestrationMessage(
                    instance_id=action.instance_id,
                    name=action.name,
                    version=action.version,
                    input=action.input,
                    traceparent=self.traceparent,
                    notify=action.notify,
                )
            )
        )

    def _task_cancelled(self, turn: TurnChanges, action: TaskCancelled) -> None:
        target = self._steps.get(action.target)
        if isinstance(target, ActivityFuture):
            turn.cancelled_activities.append(action.target)
        elif isinstance(target, SubOrchestrationFuture):
            turn.orchestrator_messages.append(
                ScheduledMessage(
                    message=CancelOrchestrationMessage(
                        instance_id=target.instance_id,
                        reason=(
                            f"parent {self._identity.instance_id!r} dropped the sub-orchestration"
                        ),
                    )
                )
            )

    def _event_sent(self, turn: TurnChanges, action: EventSent) -> None:
        message: RaiseEventMessage | EnqueueEventMessage
        if action.mailbox:
            message = EnqueueEventMessage(
                instance_id=action.instance_id,
                queue=action.name,
                data=action.data,
                traceparent=self.traceparent,
            )
        else:
            message = RaiseEventMessage(
                instance_id=action.instance_id,
                name=action.name,
                data=action.data,
                traceparent=self.traceparent,
            )
        turn.orchestrator_messages.append(ScheduledMessage(message=message))

    def _custom_status_set(self, turn: TurnChanges, action: CustomStatusSet) -> None:
        turn.custom_status_changed = True
        value = bytes(action.value)
        turn.custom_status = None if value == b"null" else value

    def _kv_set(self, turn: TurnChanges, action: KvSet) -> None:
        turn.kv_changes[action.key] = KvChange(
            key=action.key, value=bytes(action.value), updated_at_ms=action.ts
        )

    def _kv_deleted(self, turn: TurnChanges, action: KvDeleted) -> None:
        turn.kv_changes[action.key] = KvChange(key=action.key, value=None, updated_at_ms=action.ts)

    def _kv_cleared(self, turn: TurnChanges, action: KvCleared) -> None:
        turn.kv_clear_all = True
        turn.kv_changes.clear()


# Keyed by exact type: history events are leaf Structs of a closed union.
_EFFECTS: dict[type[HistoryEvent], Callable[[SideEffects, TurnChanges, Any], None]] = {
    ActivityScheduled: SideEffects._activity_scheduled,
    TimerCreated: SideEffects._timer_created,
    SubOrchestrationScheduled: SideEffects._sub_orchestration_scheduled,
    OrchestrationChained: SideEffects._orchestration_chained,
    TaskCancelled: SideEffects._task_cancelled,
    CustomStatusSet: SideEffects._custom_status_set,
    EventSent: SideEffects._event_sent,
    KvSet: SideEffects._kv_set,
    KvDeleted: SideEffects._kv_deleted,
    KvCleared: SideEffects._kv_cleared,
}
