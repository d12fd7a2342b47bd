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
    """Where a sub-orchestration reports its result.

    ``instance_id`` and ``execution_id`` name the parent's execution, ``seq`` the parent's
    ``SubOrchestrationScheduled`` step the result completes.
    """

    instance_id: str
    execution_id: int
    seq: int


class CarriedEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An arrival carried across ``continue_as_new`` into the next execution.

    ``kind`` ``"queue"``: an unconsumed mailbox message of queue ``queue``
    (``ctx.dequeue_event``); ``"event"``: an external event named ``queue`` that reached the
    instance in the turn that continued. ``data`` is its payload.
    """

    queue: str
    data: Raw
    kind: str = "queue"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of every history event: ``event_id`` (1-based position in the execution) and
    ``ts`` (wall-clock ms of the turn that recorded it). Stored with a ``type`` tag, the
    class name."""

    event_id: int
    ts: int


# -- lifecycle --------------------------------------------------------------------------------


class OrchestrationStarted(Event, tag="OrchestrationStarted", frozen=True):
    """First event of every execution: the orchestration ``name`` and ``version`` it runs,
    its ``input``, the ``parent`` it reports to (sub-orchestrations) and the
    ``carried_events`` a ``continue_as_new`` brought along."""

    name: str
    version: str
    input: Raw = NULL
    parent: ParentRef | None = None
    carried_events: list[CarriedEvent] = []
    """Consumed before new arrivals."""
    traceparent: str | None = None
    """W3C ``traceparent`` of the span that started the workflow (the client's, or the
    parent's turn): every turn, activity and sub-orchestration of the execution belongs to its
    trace, in any process, after any restart. None: the start was not traced."""
    custom_status: Raw = NULL
    """The custom status the previous execution left (``continue_as_new``): what
    ``ctx.get_custom_status()`` returns until the code sets another. JSON ``null``: none."""
    notify: str | None = None
    """An instance whose mailbox hears when this instance ends (completes or fails, not when
    it continues as new): the schedule that started it as a run. None: nobody."""


class OrchestrationCompleted(Event, tag="OrchestrationCompleted", frozen=True):
    """The code returned ``output``; last event of the execution."""

    output: Raw = NULL


class OrchestrationFailed(Event, tag="OrchestrationFailed", frozen=True):
    """The execution ended with ``error`` (user code, nondeterminism, cancellation, poison);
    last event of the execution."""

    error: ErrorInfo


class ContinuedAsNew(Event, tag="ContinuedAsNew", frozen=True):
    """The code called ``ctx.continue_as_new(input, version=...)``; last event of the
    execution, the next one starts with ``input`` (on ``version`` when pinned)."""

    input: Raw = NULL
    version: str | None = None


class CancelRequested(Event, tag="CancelRequested", frozen=True):
    """``Client.cancel_orchestration`` (or the parent ending) reached the instance, with its
    ``reason``; the execution fails as cancelled."""

    reason: str


class ExecutionRewound(Event, tag="ExecutionRewound", frozen=True):
    """``Client.rewind_orchestration`` took the failed execution back: the events
    ``undone_from`` through ``undone_through`` (the step that failed it, through its end) are
    undone. They stay in history, and replay skips them; the open steps run again."""

    undone_from: int
    undone_through: int
    reason: str | None = None


# -- actions (seq-numbered, matched against code on replay) ----------------------------------


class ActivityScheduled(Event, tag="ActivityScheduled", frozen=True):
    """Step ``seq``: run activity ``name`` with ``input``; ``attempt`` counts retries under a
    ``RetryPolicy`` (1 first), ``session`` and ``tag`` route it to a worker."""

    seq: int
    name: str
    input: Raw = NULL
    attempt: int = 1
    session: str | None = None
    tag: str | None = None
    heartbeat_timeout_ms: int | None = None
    """The attempt fails (retryable) when its activity goes this long without a heartbeat."""
    heartbeat_details: Raw = NULL
    """The last heartbeat details of the previous attempt (``last_heartbeat_details``)."""


class TimerCreated(Event, tag="TimerCreated", frozen=True):
    """Step ``seq``: a durable timer due at ``fire_at``."""

    seq: int
    fire_at: int
    """Absolute wall-clock ms, fixed when first scheduled."""


class SubOrchestrationScheduled(Event, tag="SubOrchestrationScheduled", frozen=True):
    """Step ``seq``: start orchestration ``name`` (``version``, or the latest) as child
    ``instance_id`` with ``input``, and wait for its result."""

    seq: int
    name: str
    instance_id: str
    version: str | None = None
    input: Raw = NULL


class OrchestrationChained(Event, tag="OrchestrationChained", frozen=True):
    """Step ``seq``: a detached (fire-and-forget) start of ``name`` as ``instance_id`` with
    ``input``; no parent link, nothing to wait for."""

    seq: int
    name: str
    instance_id: str
    version: str | None = None
    input: Raw = NULL
    notify: str | None = None
    """The started instance reports its end to this one (see ``OrchestrationStarted``)."""


class CustomStatusSet(Event, tag="CustomStatusSet", frozen=True):
    """Step ``seq``: ``ctx.set_custom_status(value)``."""

    seq: int
    value: Raw = NULL
    """JSON ``null`` clears the status."""


class EventSent(Event, tag="EventSent", frozen=True):
    """Step ``seq``: ``ctx.raise_event`` sent external event ``name`` with ``data`` to
    instance ``instance_id`` (``mailbox``: ``ctx.enqueue_event`` sent it to mailbox ``name``
    instead). The message goes out with the turn that records this step, exactly once."""

    seq: int
    instance_id: str
    name: str
    data: Raw = NULL
    mailbox: bool = False


class KvSet(Event, tag="KvSet", frozen=True):
    """Step ``seq``: ``ctx.kv.set(key, value)``."""

    seq: int
    key: str
    value: Raw


class KvDeleted(Event, tag="KvDeleted", frozen=True):
    """Step ``seq``: ``ctx.kv.delete(key)``."""

    seq: int
    key: str


class KvCleared(Event, tag="KvCleared", frozen=True):
    """Step ``seq``: ``ctx.kv.clear()``."""

    seq: int


class TaskCancelled(Event, tag="TaskCancelled", frozen=True):
    """Step ``seq``: the code dropped the outstanding activity or sub-orchestration of step
    ``target`` (a select loser, an ended branch); its work is withdrawn."""

    seq: int
    target: int
    """``seq`` of the activity / sub-orchestration that was cancelled."""


# -- completions and arrivals ------------------------------------------------------------------


class ActivityCompleted(Event, tag="ActivityCompleted", frozen=True):
    """The activity of step ``seq`` returned ``result``."""

    seq: int
    result: Raw = NULL


class ActivityFailed(Event, tag="ActivityFailed", frozen=True):
    """The activity of step ``seq`` failed with ``error`` (this attempt), having reported
    ``heartbeat_details`` last (JSON ``null``: none)."""

    seq: int
    error: ErrorInfo
    heartbeat_details: Raw = NULL


class TimerFired(Event, tag="TimerFired", frozen=True):
    """The timer of step ``seq`` fired."""

    seq: int


class SubOrchestrationCompleted(Event, tag="SubOrchestrationCompleted", frozen=True):
    """The child of step ``seq`` completed with ``result``."""

    seq: int
    result: Raw = NULL


class SubOrchestrationFailed(Event, tag="SubOrchestrationFailed", frozen=True):
    """The child of step ``seq`` failed with ``error``."""

    seq: int
    error: ErrorInfo


class EventRaised(Event, tag="EventRaised", frozen=True):
    """An external event ``name`` (``Client.raise_event``) reached the instance with ``data``."""

    name: str
    data: Raw = NULL


class EventQueued(Event, tag="EventQueued", frozen=True):
    """A mailbox message (``Client.enqueue_event``) reached queue ``queue`` with ``data``."""

    queue: str
    data: Raw = NULL


HistoryEvent = (
    OrchestrationStarted
    | OrchestrationCompleted
    | OrchestrationFailed
    | ContinuedAsNew
    | CancelRequested
    | ExecutionRewound
    | ActivityScheduled
    | TimerCreated
    | SubOrchestrationScheduled
    | OrchestrationChained
    | CustomStatusSet
    | EventSent
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
"""Every history event type, as one tagged union (the ``type`` field names the class)."""

ACTION_EVENTS = (
    ActivityScheduled,
    TimerCreated,
    SubOrchestrationScheduled,
    OrchestrationChained,
    CustomStatusSet,
    EventSent,
    KvSet,
    KvDeleted,
    KvCleared,
    TaskCancelled,
)
"""Events recorded by the orchestration's own durable calls; replay matches them."""
TERMINAL_EVENTS = (OrchestrationCompleted, OrchestrationFailed, ContinuedAsNew)
"""Events that end an execution."""


def undone_event_ids(history: list[HistoryEvent]) -> frozenset[int]:
    """The ids of the events the rewinds in ``history`` undid (replay skips them)."""
    undone: set[int] = set()
    for event in history:
        if isinstance(event, ExecutionRewound):
            undone.update(range(event.undone_from, event.undone_through + 1))
    return frozenset(undone)


_event_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(HistoryEvent)
_events_decoder = msgspec.json.Decoder(list[HistoryEvent])


def encode_event(event: HistoryEvent) -> bytes:
    """One event as stored: JSON, payloads byte for byte."""
    return _event_encoder.encode(event)


def decode_event(data: bytes | str) -> HistoryEvent:
    """The event ``encode_event`` stored."""
    event: HistoryEvent = _event_decoder.decode(data)
    return event


def encode_events(events: list[HistoryEvent]) -> bytes:
    """A list of events as one JSON array."""
    return _event_encoder.encode(events)


def decode_events(data: bytes | str) -> list[HistoryEvent]:
    """The events ``encode_events`` stored."""
    return _events_decoder.decode(data)
