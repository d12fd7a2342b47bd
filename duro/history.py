"""History events: the append-only record of each orchestration execution.

For people who read histories (``Client.get_history``), write tools over them, or implement a
store. Every event has ``event_id`` (its 1-based position in the execution) and ``ts`` (the
wall-clock milliseconds of the turn that recorded it). Events produced by an orchestration's
own durable calls (*actions*) carry ``seq``, the call's ordinal in the execution; completions
and cancellations refer back to it. Payloads are raw JSON (``msgspec.Raw``).

The stored form of every event (its ``type`` tag and fields) is stable: new fields get
defaults, and a history recorded by an earlier release keeps replaying. ``HistoryFile`` is the
versioned JSON export of one execution (``Client.export_history``), the input of
``duro.testing.replay``.
"""

from __future__ import annotations

from ._history import (
    ACTION_EVENTS,
    TERMINAL_EVENTS,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    CarriedEvent,
    ContinuedAsNew,
    CustomStatusSet,
    Event,
    EventQueued,
    EventRaised,
    EventSent,
    ExecutionRewound,
    HistoryEvent,
    KvCleared,
    KvDeleted,
    KvSet,
    OrchestrationChained,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    ParentRef,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
    TimerFired,
    decode_event,
    decode_events,
    encode_event,
    encode_events,
)
from ._history_file import HISTORY_FORMAT, HISTORY_FORMAT_VERSION, ExportedKv, HistoryFile

__all__ = [
    "ACTION_EVENTS",
    "HISTORY_FORMAT",
    "HISTORY_FORMAT_VERSION",
    "TERMINAL_EVENTS",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "CancelRequested",
    "CarriedEvent",
    "ContinuedAsNew",
    "CustomStatusSet",
    "Event",
    "EventQueued",
    "EventRaised",
    "EventSent",
    "ExecutionRewound",
    "ExportedKv",
    "HistoryEvent",
    "HistoryFile",
    "KvCleared",
    "KvDeleted",
    "KvSet",
    "OrchestrationChained",
    "OrchestrationCompleted",
    "OrchestrationFailed",
    "OrchestrationStarted",
    "ParentRef",
    "SubOrchestrationCompleted",
    "SubOrchestrationFailed",
    "SubOrchestrationScheduled",
    "TaskCancelled",
    "TimerCreated",
    "TimerFired",
    "decode_event",
    "decode_events",
    "encode_event",
    "encode_events",
]
