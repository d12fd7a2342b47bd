"""History events: the append-only record of one orchestration execution.

Every event has ``event_id`` (1-based position in its execution) and ``ts`` (wall-clock ms of
the turn that wrote it; replay serves ``ctx.utc_now()`` from it). Events that an orchestration
*action* produced carry ``seq``: the action's ordinal in the execution, which completions and
cancellations refer back to. Payloads are raw JSON (``msgspec.Raw``) so they are stored without
re-encoding.

Schema evolution: new fields get defaults; existing fields never change type. Golden histories
under ``tests/histories/`` must keep replaying.
"""

from __future__ import annotations

import msgspec

from ._status import ErrorInfo

Raw = msgspec.Raw
NULL = msgspec.Raw(b"null")


class ParentRef(msgspec.Struct, frozen=True, kw_only=True):
    """Where a sub-orchestration reports its result."""

    instance_id: str
    execution_id: int
    seq: int


class CarriedEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An arrival carried across ``continue_as_new``: an unconsumed ``dequeue_event`` message,
    or an event that reached the instance in the turn that continued (kind ``"event"``)."""

    queue: str
    data: Raw
    kind: str = "queue"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    event_id: int
    ts: int


# -- lifecycle --------------------------------------------------------------------------------


class OrchestrationStarted(Event, tag="OrchestrationStarted", frozen=True):
    name: str
    version: str
    input: Raw = NULL
    parent: ParentRef | None = None
    carried_events: list[CarriedEvent] = []
    """Queue messages carried from the previous execution, consumed before new arrivals."""


class OrchestrationCompleted(Event, tag="OrchestrationCompleted", frozen=True):
    output: Raw = NULL


class OrchestrationFailed(Event, tag="OrchestrationFailed", frozen=True):
    error: ErrorInfo


class ContinuedAsNew(Event, tag="ContinuedAsNew", frozen=True):
    input: Raw = NULL
    version: str | None = None


class CancelRequested(Event, tag="CancelRequested", frozen=True):
    reason: str


# -- actions (seq-numbered, matched against code on replay) ----------------------------------


class ActivityScheduled(Event, tag="ActivityScheduled", frozen=True):
    seq: int
    name: str
    input: Raw = NULL
    attempt: int = 1
    session: str | None = None
    tag: str | None = None


class TimerCreated(Event, tag="TimerCreated", frozen=True):
    seq: int
    fire_at: int
    """Absolute wall-clock ms, fixed when first scheduled."""


class SubOrchestrationScheduled(Event, tag="SubOrchestrationScheduled", frozen=True):
    seq: int
    name: str
    instance_id: str
    version: str | None = None
    input: Raw = NULL


class OrchestrationChained(Event, tag="OrchestrationChained", frozen=True):
    """A detached (fire-and-forget) start of another orchestration."""

    seq: int
    name: str
    instance_id: str
    version: str | None = None
    input: Raw = NULL


class CustomStatusSet(Event, tag="CustomStatusSet", frozen=True):
    seq: int
    value: Raw = NULL
    """JSON ``null`` clears the status."""


class KvSet(Event, tag="KvSet", frozen=True):
    seq: int
    key: str
    value: Raw


class KvDeleted(Event, tag="KvDeleted", frozen=True):
    seq: int
    key: str


class KvCleared(Event, tag="KvCleared", frozen=True):
    seq: int


class TaskCancelled(Event, tag="TaskCancelled", frozen=True):
    """The code dropped an outstanding activity or sub-orchestration (select loser, ...)."""

    seq: int
    target: int
    """``seq`` of the activity / sub-orchestration that was cancelled."""


# -- completions and arrivals ------------------------------------------------------------------


class ActivityCompleted(Event, tag="ActivityCompleted", frozen=True):
    seq: int
    result: Raw = NULL


class ActivityFailed(Event, tag="ActivityFailed", frozen=True):
    seq: int
    error: ErrorInfo


class TimerFired(Event, tag="TimerFired", frozen=True):
    seq: int


class SubOrchestrationCompleted(Event, tag="SubOrchestrationCompleted", frozen=True):
    seq: int
    result: Raw = NULL


class SubOrchestrationFailed(Event, tag="SubOrchestrationFailed", frozen=True):
    seq: int
    error: ErrorInfo


class EventRaised(Event, tag="EventRaised", frozen=True):
    """An external event (``Client.raise_event``) reached the instance."""

    name: str
    data: Raw = NULL


class EventQueued(Event, tag="EventQueued", frozen=True):
    """A mailbox message (``Client.enqueue_event``) reached the instance."""

    queue: str
    data: Raw = NULL


HistoryEvent = (
    OrchestrationStarted
    | OrchestrationCompleted
    | OrchestrationFailed
    | ContinuedAsNew
    | CancelRequested
    | ActivityScheduled
    | TimerCreated
    | SubOrchestrationScheduled
    | OrchestrationChained
    | CustomStatusSet
    | KvSet
    | KvDeleted
    | KvCleared
    | TaskCancelled
    | ActivityCompleted
    | ActivityFailed
    | TimerFired
    | SubOrchestrationCompleted
    | SubOrchestrationFailed
    | EventRaised
    | EventQueued
)

ACTION_EVENTS = (
    ActivityScheduled,
    TimerCreated,
    SubOrchestrationScheduled,
    OrchestrationChained,
    CustomStatusSet,
    KvSet,
    KvDeleted,
    KvCleared,
    TaskCancelled,
)
TERMINAL_EVENTS = (OrchestrationCompleted, OrchestrationFailed, ContinuedAsNew)

_event_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(HistoryEvent)
_events_decoder = msgspec.json.Decoder(list[HistoryEvent])


def encode_event(event: HistoryEvent) -> bytes:
    return _event_encoder.encode(event)


def decode_event(data: bytes | str) -> HistoryEvent:
    event: HistoryEvent = _event_decoder.decode(data)
    return event


def encode_events(events: list[HistoryEvent]) -> bytes:
    return _event_encoder.encode(events)


def decode_events(data: bytes | str) -> list[HistoryEvent]:
    return _events_decoder.decode(data)
