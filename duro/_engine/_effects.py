"""What recording an action sends out: work items, timers, child starts, cancellations.

Side effects happen only for newly recorded actions, never on replay.
"""

from __future__ import annotations

from typing import Any

from .._history import (
    ActivityScheduled,
    CustomStatusSet,
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
    ScheduledMessage,
    StartOrchestrationMessage,
    TimerFiredMessage,
)
from .._records import KvChange, TurnChanges
from ._futures import DurableFuture
from ._identity import Identity
from ._steps import ActivityFuture, SubOrchestrationFuture


def record_side_effects(
    turn: TurnChanges,
    action: HistoryEvent,
    owner: Identity,
    target: DurableFuture[Any] | None,
) -> None:
    """Add to ``turn`` what recording ``action`` sends out (``target``: a cancelled step)."""
    if isinstance(action, ActivityScheduled):
        turn.activity_tasks.append(
            ActivityTask(
                instance_id=owner.instance_id,
                execution_id=owner.execution_id,
                seq=action.seq,
                name=action.name,
                input=action.input,
                attempt=action.attempt,
                session=action.session,
                tag=action.tag,
                orchestration_name=owner.name,
                orchestration_version=owner.version,
            )
        )
    elif isinstance(action, TimerCreated):
        turn.orchestrator_messages.append(
            ScheduledMessage(
                message=TimerFiredMessage(
                    instance_id=owner.instance_id,
                    execution_id=owner.execution_id,
                    seq=action.seq,
                    fire_at=action.fire_at,
                ),
                visible_at_ms=action.fire_at,
            )
        )
    elif isinstance(action, SubOrchestrationScheduled):
        parent = ParentRef(
            instance_id=owner.instance_id, execution_id=owner.execution_id, seq=action.seq
        )
        turn.orchestrator_messages.append(
            ScheduledMessage(
                message=StartOrchestrationMessage(
                    instance_id=action.instance_id,
                    name=action.name,
                    version=action.version,
                    input=action.input,
                    parent=parent,
                )
            )
        )
    elif isinstance(action, OrchestrationChained):
        turn.orchestrator_messages.append(
            ScheduledMessage(
                message=StartOrchestrationMessage(
                    instance_id=action.instance_id,
                    name=action.name,
                    version=action.version,
                    input=action.input,
                )
            )
        )
    elif isinstance(action, TaskCancelled):
        if isinstance(target, ActivityFuture):
            turn.cancelled_activities.append(action.target)
        elif isinstance(target, SubOrchestrationFuture):
            turn.orchestrator_messages.append(
                ScheduledMessage(
                    message=CancelOrchestrationMessage(
                        instance_id=target.instance_id,
                        reason=f"parent {owner.instance_id!r} dropped the sub-orchestration",
                    )
                )
            )
    elif isinstance(action, CustomStatusSet):
        turn.custom_status_changed = True
        value = bytes(action.value)
        turn.custom_status = None if value == b"null" else value
    elif isinstance(action, KvSet):
        turn.kv_changes[action.key] = KvChange(
            key=action.key, value=bytes(action.value), updated_at_ms=action.ts
        )
    elif isinstance(action, KvDeleted):
        turn.kv_changes[action.key] = KvChange(key=action.key, value=None, updated_at_ms=action.ts)
    elif isinstance(action, KvCleared):
        turn.kv_clear_all = True
        turn.kv_changes.clear()
