"""Replay matching: does a recorded action event match what the code asks for now?"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .._history import (
    ActivityScheduled,
    CustomStatusSet,
    EventSent,
    HistoryEvent,
    KvCleared,
    KvDeleted,
    KvSet,
    OrchestrationChained,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
)


def matches(recorded: HistoryEvent, action: HistoryEvent) -> bool:
    """True if ``action`` is the same durable call as ``recorded``: same kind, same key."""
    if type(recorded) is not type(action):
        return False
    key = _COMPARED.get(type(recorded))
    return key is None or key(recorded) == key(action)


# What must be equal, by action kind (exact type: history events are leaf Structs of a closed
# union); kinds not listed match on kind alone.
# Inputs are compared too: two branches calling one activity with different inputs in swapped
# order must be caught, and deterministic code encodes equal inputs identically.
_COMPARED: dict[type[HistoryEvent], Callable[[Any], object]] = {
    ActivityScheduled: lambda e: (e.name, e.session, e.tag, bytes(e.input)),
    SubOrchestrationScheduled: lambda e: (e.name, e.instance_id, bytes(e.input)),
    OrchestrationChained: lambda e: (e.name, e.instance_id, bytes(e.input)),
    EventSent: lambda e: (e.instance_id, e.name, e.mailbox, bytes(e.data)),
    KvSet: lambda e: e.key,
    KvDeleted: lambda e: e.key,
    TaskCancelled: lambda e: e.target,
}


def describe(event: HistoryEvent) -> str:
    """The event as a nondeterminism error names it: enough to tell two steps apart."""
    describe_kind = _DESCRIBED.get(type(event))
    return type(event).__name__ if describe_kind is None else describe_kind(event)


def _activity(event: ActivityScheduled) -> str:
    routing = [
        f"{field} {value!r}"
        for field, value in (("tag", event.tag), ("session", event.session))
        if value is not None
    ]
    where = f" ({', '.join(routing)})" if routing else ""
    return f"activity {event.name!r} with input {preview(event.input)}{where}"


def preview(raw: msgspec.Raw, limit: int = 60) -> str:
    """A payload as a short text: its JSON, cut at ``limit`` characters."""
    text = bytes(raw).decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


_DESCRIBED: dict[type[HistoryEvent], Callable[[Any], str]] = {
    ActivityScheduled: _activity,
    TimerCreated: lambda e: "a timer",
    SubOrchestrationScheduled: lambda e: (
        f"sub-orchestration {e.name!r} ({e.instance_id}) with input {preview(e.input)}"
    ),
    OrchestrationChained: lambda e: (
        f"detached start of {e.name!r} ({e.instance_id}) with input {preview(e.input)}"
    ),
    CustomStatusSet: lambda e: "set_custom_status",
    EventSent: lambda e: (
        f"{'enqueue_event' if e.mailbox else 'raise_event'}({e.instance_id!r}, {e.name!r}, "
        f"{preview(e.data)})"
    ),
    KvSet: lambda e: f"kv.set({e.key!r})",
    KvDeleted: lambda e: f"kv.delete({e.key!r})",
    KvCleared: lambda e: "kv.clear()",
    TaskCancelled: lambda e: f"cancellation of step {e.target}",
}
