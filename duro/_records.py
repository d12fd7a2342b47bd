"""What the store keeps about an instance, and what one turn changes in it.

Shared by the engine, which builds one :class:`TurnChanges` per turn, and the providers, which
commit it as it is (``TurnCommit`` adds only the lock token). A new turn effect is a field
here, the engine code that sets it, and one place in each provider that applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._history import HistoryEvent
from ._messages import ActivityTask, ScheduledMessage
from ._status import ErrorInfo, ExecutionStatus, State


@dataclass(frozen=True, slots=True, kw_only=True)
class KvEntry:
    """One committed key of an instance's durable key-value map."""

    value: bytes
    """Raw JSON, stored byte for byte."""
    updated_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KvChange:
    """A write to one key: a new value, or ``value=None`` to delete the key."""

    key: str
    value: bytes | None
    """Raw JSON, or None to delete the key."""
    updated_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRecord:
    """What the store knows about an instance, without reading its history."""

    instance_id: str
    state: State
    """PENDING when only a start message exists (no turn committed yet)."""
    name: str
    version: str | None = None
    execution_id: int = 0
    execution_status: ExecutionStatus | None = None
    output: bytes | None = None
    error: ErrorInfo | None = None
    custom_status: bytes | None = None
    custom_status_version: int = 0
    parent_instance_id: str | None = None
    created_at_ms: int = 0
    """When the start was enqueued."""
    updated_at_ms: int = 0
    completed_at_ms: int | None = None


@dataclass(slots=True, kw_only=True)
class TurnChanges:
    """Everything one turn changes in the store, applied all together or not at all.

    The record fields (status, output, error, name, version, parent) carry the execution's
    full state after the turn, not a delta. ``Provider.commit_turns`` lists the order in which
    a store applies the rest.
    """

    instance_id: str
    execution_id: int
    """The execution the turn belongs to; a new id opens a new execution."""
    name: str
    version: str
    parent_instance_id: str | None = None
    execution_status: ExecutionStatus = ExecutionStatus.RUNNING
    output: bytes | None = None
    error: ErrorInfo | None = None
    new_events: list[HistoryEvent] = field(default_factory=list)
    """Appended to ``(instance_id, execution_id)``; event ids continue the history."""
    custom_status_changed: bool = False
    custom_status: bytes | None = None
    """The new custom status when ``custom_status_changed`` (None clears it)."""
    kv_clear_all: bool = False
    """Every key goes, before ``kv_changes`` apply."""
    kv_changes: dict[str, KvChange] = field(default_factory=dict)
    """The last write to each key in this turn, by key."""
    activity_tasks: list[ActivityTask] = field(default_factory=list)
    """Work items to enqueue (visible now)."""
    cancelled_activities: list[int] = field(default_factory=list)
    """``seq`` numbers of this execution's activities whose work items are withdrawn (after
    ``activity_tasks`` are inserted, so a same-turn insert and cancel nets to absent)."""
    orchestrator_messages: list[ScheduledMessage] = field(default_factory=list)
    """Messages for any instance: timers, child starts, results to a parent, cancellations."""
