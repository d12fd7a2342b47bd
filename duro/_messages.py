"""Queue messages: what flows between clients, orchestration turns and activity workers.

``OrchestratorMessage`` variants go to the orchestrator queue of ``instance_id``; an
``ActivityTask`` goes to the worker queue. Completions carry the ``execution_id`` they belong
to; the engine drops completions for another execution (stale after continue-as-new).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ._history import NULL, CarriedEvent, ParentRef, Raw
from ._status import ErrorInfo


class OrchestratorMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True, omit_defaults=True
):
    """Base of the orchestrator-queue messages: each is for one instance."""

    instance_id: str


class StartOrchestrationMessage(OrchestratorMessage, frozen=True):
    """Start a new instance (from a client, or a parent for its child)."""

    name: str
    version: str | None = None
    """None: the worker picks the latest registered version."""
    input: Raw = NULL
    parent: ParentRef | None = None
    traceparent: str | None = None
    """W3C ``traceparent`` of the span that started the instance: the client's, or the turn
    that started it as a sub-orchestration (None: not traced). Recorded in
    ``OrchestrationStarted``, so the whole workflow belongs to that trace."""
    notify: str | None = None
    """An instance to tell when this one ends (recorded in ``OrchestrationStarted``): a
    schedule that started it as a run. None: nobody."""


class ContinueAsNewMessage(OrchestratorMessage, frozen=True):
    """Start the next execution of an instance that called ``continue_as_new``."""

    execution_id: int
    """The *new* execution's id."""
    name: str
    version: str | None = None
    input: Raw = NULL
    carried_events: list[CarriedEvent] = []
    parent: ParentRef | None = None
    traceparent: str | None = None
    """The workflow's trace, passed on to the next execution."""
    custom_status: Raw = NULL
    """The custom status the ending execution left, for ``ctx.get_custom_status()``."""
    notify: str | None = None
    """``OrchestrationStarted.notify`` of the ending execution, passed on."""


class ActivityResultMessage(OrchestratorMessage, frozen=True):
    """An activity's result or error, reported by the worker that ran it."""

    execution_id: int
    seq: int
    result: Raw = NULL
    """Ignored when ``error`` is set."""
    error: ErrorInfo | None = None
    heartbeat_details: Raw = NULL
    """With ``error``: what the attempt last passed to ``ActivityContext.heartbeat``."""


class TimerFiredMessage(OrchestratorMessage, frozen=True):
    """A durable timer; enqueued visible at ``fire_at``."""

    execution_id: int
    seq: int
    fire_at: int


class SubOrchestrationResultMessage(OrchestratorMessage, frozen=True):
    """Sent by a child's terminal turn to ``instance_id`` = the parent."""

    execution_id: int
    seq: int
    child_instance_id: str
    result: Raw = NULL
    """Ignored when ``error`` is set."""
    error: ErrorInfo | None = None


class RaiseEventMessage(OrchestratorMessage, frozen=True):
    """An external event (``Client.raise_event``)."""

    name: str
    data: Raw = NULL
    traceparent: str | None = None
    """W3C ``traceparent`` of the client span that raised it; the turn links to it."""


class EnqueueEventMessage(OrchestratorMessage, frozen=True):
    """A mailbox message (``Client.enqueue_event``)."""

    queue: str
    data: Raw = NULL
    traceparent: str | None = None
    """W3C ``traceparent`` of the client span that enqueued it; the turn links to it."""


class CancelOrchestrationMessage(OrchestratorMessage, frozen=True):
    """Cancel the instance (``Client.cancel_orchestration``, or a parent's end)."""

    reason: str
    traceparent: str | None = None
    """W3C ``traceparent`` of the client span that cancelled; the turn links to it."""


class RewindOrchestrationMessage(OrchestratorMessage, frozen=True):
    """Take a FAILED instance back to before the step that failed it
    (``Client.rewind_orchestration``, or a rewound parent for its failed child)."""

    reason: str | None = None
    traceparent: str | None = None
    """W3C ``traceparent`` of the client span that asked for it."""


AnyOrchestratorMessage = (
    StartOrchestrationMessage
    | ContinueAsNewMessage
    | ActivityResultMessage
    | TimerFiredMessage
    | SubOrchestrationResultMessage
    | RaiseEventMessage
    | EnqueueEventMessage
    | CancelOrchestrationMessage
    | RewindOrchestrationMessage
)
"""Every orchestrator-queue message type, as one tagged union."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledMessage:
    """An orchestrator-queue message, visible from ``visible_at_ms`` (None: now)."""

    message: AnyOrchestratorMessage
    visible_at_ms: int | None = None


class ActivityTask(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A request to run one activity attempt (the worker queue's message)."""

    instance_id: str
    execution_id: int
    seq: int
    name: str
    input: Raw = NULL
    attempt: int = 1
    session: str | None = None
    tag: str | None = None
    orchestration_name: str = ""
    orchestration_version: str = ""
    traceparent: str | None = None
    """W3C ``traceparent`` the activity's span is a child of: the turn that scheduled it, or
    the workflow's trace (None: not traced)."""
    scheduled_at_ms: int = 0
    """When the turn that scheduled it ran (0: unknown, queued by duro 0.1)."""
    heartbeat_timeout_ms: int | None = None
    """The worker fails the attempt when the activity goes this long without a heartbeat."""
    heartbeat_details: Raw = NULL
    """The last heartbeat details of the previous attempt, or of an earlier delivery of this
    one (kept by ``renew_activity_lock``): ``ActivityContext.last_heartbeat_details``."""


_encoder = msgspec.json.Encoder()
_message_decoder = msgspec.json.Decoder(AnyOrchestratorMessage)
_task_decoder = msgspec.json.Decoder(ActivityTask)


def encode_message(message: AnyOrchestratorMessage | ActivityTask) -> bytes:
    """A message or activity task as stored (JSON, tagged with its type)."""
    return _encoder.encode(message)


def decode_message(data: bytes | str) -> AnyOrchestratorMessage:
    """The message ``encode_message`` stored."""
    message: AnyOrchestratorMessage = _message_decoder.decode(data)
    return message


def decode_task(data: bytes | str) -> ActivityTask:
    """The activity task ``encode_message`` stored."""
    return _task_decoder.decode(data)
