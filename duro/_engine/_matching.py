"""Replay matching: does a recorded action event match what the code asks for now?"""

from __future__ import annotations

import msgspec

from .._history import (
    ActivityScheduled,
    CustomStatusSet,
    HistoryEvent,
    KvCleared,
    KvDeleted,
    KvSet,
    OrchestrationChained,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
)


def describe(event: HistoryEvent) -> str:
    if isinstance(event, ActivityScheduled):
        return f"activity {event.name!r} with input {_preview(event.input)}"
    if isinstance(event, TimerCreated):
        return "a timer"
    if isinstance(event, SubOrchestrationScheduled):
        return f"sub-orchestration {event.name!r} ({event.instance_id})"
    if isinstance(event, OrchestrationChained):
        return f"detached start of {event.name!r} ({event.instance_id})"
    if isinstance(event, CustomStatusSet):
        return "set_custom_status"
    if isinstance(event, KvSet):
        return f"kv.set({event.key!r})"
    if isinstance(event, KvDeleted):
        return f"kv.delete({event.key!r})"
    if isinstance(event, KvCleared):
        return "kv.clear()"
    if isinstance(event, TaskCancelled):
        return f"cancellation of step {event.target}"
    return type(event).__name__


def _preview(raw: msgspec.Raw, limit: int = 60) -> str:
    text = bytes(raw).decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def matches(recorded: HistoryEvent, action: HistoryEvent) -> bool:
    if type(recorded) is not type(action):
        return False
    # Inputs are compared too: two branches calling one activity with different inputs in
    # swapped order must be caught, and deterministic code encodes equal inputs identically.
    if isinstance(recorded, ActivityScheduled) and isinstance(action, ActivityScheduled):
        return (recorded.name, recorded.session, recorded.tag, bytes(recorded.input)) == (
            action.name,
            action.session,
            action.tag,
            bytes(action.input),
        )
    if isinstance(recorded, SubOrchestrationScheduled | OrchestrationChained) and isinstance(
        action, SubOrchestrationScheduled | OrchestrationChained
    ):
        return (recorded.name, recorded.instance_id, bytes(recorded.input)) == (
            action.name,
            action.instance_id,
            bytes(action.input),
        )
    if isinstance(recorded, KvSet | KvDeleted) and isinstance(action, KvSet | KvDeleted):
        return recorded.key == action.key
    if isinstance(recorded, TaskCancelled) and isinstance(action, TaskCancelled):
        return recorded.target == action.target
    return True
