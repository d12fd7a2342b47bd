"""What the shell reports about turns and activities: spans, metrics, and the trace it stamps.

The engine carries a workflow's trace as data (``OrchestrationStarted.traceparent``, stamped on
the work an execution sends out); here the dispatcher and the worker turn it into spans: each
turn is a child of the workflow's trace, each activity a child of the turn that scheduled it,
each sub-orchestration's turns children of the turn that started it. Replay never makes a span:
a span is made per processed batch or per activity execution, never per recorded event.

Everything here is only built once ``Tracing.tracer()`` or ``Metrics.instruments()`` says an
SDK listens; otherwise the dispatcher and worker take their plain paths.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msgspec
from opentelemetry.trace import Link, Span, SpanKind, Tracer

from .._engine import Commit, Execution
from .._engine._attempts import AttemptOutcome
from .._history import (
    ContinuedAsNew,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
)
from .._messages import (
    ActivityTask,
    CancelOrchestrationMessage,
    ContinueAsNewMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    ScheduledMessage,
    StartOrchestrationMessage,
    TimerFiredMessage,
)
from .._records import TurnChanges
from .._status import ErrorInfo, ExecutionStatus
from .._telemetry import (
    Instruments,
    Metrics,
    Tracing,
    fail_span,
    fail_span_with,
    link_to,
    parent_context,
    traceparent_of,
)
from ..providers import OrchestrationWorkItem

Attributes = dict[str, str | int | bool]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Where a runtime's spans and measurements go (``RuntimeOptions``' providers)."""

    tracing: Tracing
    metrics: Metrics


class TurnOutcome(enum.Enum):
    """How a turn ended: the ``duro.turn.outcome`` attribute of spans and metrics."""

    RUNNING = "running"
    """Committed; the execution goes on."""
    COMPLETED = "completed"
    FAILED = "failed"
    CONTINUED_AS_NEW = "continued_as_new"
    DISCARDED = "discarded"
    """Committed: messages for an execution that had already ended, consumed without effect."""
    DEFERRED = "deferred"
    """Put back untouched (a version this worker lacks, a start not yet arrived)."""
    LOCK_LOST = "lock_lost"
    """Another worker took the instance over before the commit: the turn is void."""
    ABANDONED = "abandoned"
    """The engine crashed or the commit failed: the batch goes back to be retried."""


_ENDINGS = {
    OrchestrationCompleted: TurnOutcome.COMPLETED,
    OrchestrationFailed: TurnOutcome.FAILED,
    ContinuedAsNew: TurnOutcome.CONTINUED_AS_NEW,
}


@dataclass(slots=True)
class TurnResult:
    outcome: TurnOutcome
    decision: Commit | None = None
    error: BaseException | None = None
    """What made the turn ``ABANDONED``: the engine's exception or the commit's error."""


def committed_outcome(changes: TurnChanges) -> TurnOutcome:
    last = changes.new_events[-1] if changes.new_events else None
    ending = _ENDINGS.get(type(last)) if last is not None else None
    if ending is not None:
        return ending
    if changes.execution_status is ExecutionStatus.RUNNING:
        return TurnOutcome.RUNNING
    return TurnOutcome.DISCARDED


class ObservedTurn:
    """One turn under observation: its span, what its metrics are labelled with, and the
    trace context it passes on.

    ``known`` is the cached live execution of the instance, if any (its history stands in for
    one the store left out).
    """

    def __init__(self, item: OrchestrationWorkItem, known: Execution | None) -> None:
        self.item = item
        self.messages = item.messages
        history = item.history or (known.history if known is not None else [])
        first = history[0] if history else None
        started = first if isinstance(first, OrchestrationStarted) else None
        self._start = next(
            (
                m
                for m in item.messages
                if isinstance(m, StartOrchestrationMessage | ContinueAsNewMessage)
            ),
            None,
        )
        new_execution = item.execution_id == 0 or started is None
        self._started = None if new_execution else started
        record = item.instance
        if self._started is not None:
            self.name, self.version = self._started.name, self._started.version
            self.traceparent = self._started.traceparent
        elif self._start is not None:
            self.name, self.version = self._start.name, self._start.version or ""
            self.traceparent = self._start.traceparent
        else:
            self.name = record.name if record else ""
            self.version = (record.version or "") if record else ""
            self.traceparent = None
        self.span: Span | None = None
        self.span_traceparent: str | None = None

    # -- tracing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def traced(self, tracer: Tracer | None) -> Iterator[None]:
        """The turn's span (current while the turn runs), or nothing without a tracer."""
        if tracer is None:
            yield
            return
        with tracer.start_as_current_span(
            "duro.turn",
            context=parent_context(self.traceparent),
            kind=SpanKind.CONSUMER,
            attributes=self._attributes(),
            links=self._links(),
        ) as span:
            self.span = span
            self.span_traceparent = traceparent_of(span)
            start = self._start
            if self._started is None and start is not None and self.traceparent is None:
                # Started without a trace: the workflow shares the trace its first turn begins.
                adopted = msgspec.structs.replace(start, traceparent=self.span_traceparent)
                self.messages = [adopted if m is start else m for m in self.messages]
                self.traceparent = self.span_traceparent
            yield

    def _attributes(self) -> Attributes:
        item = self.item
        attributes: Attributes = {
            "duro.instance_id": item.instance_id,
            "duro.execution_id": item.execution_id,
            "duro.messages": len(item.messages),
        }
        if self.name:
            attributes["duro.orchestration.name"] = self.name
        if self.version:
            attributes["duro.orchestration.version"] = self.version
        return attributes

    def _links(self) -> list[Link]:
        """Links to the client spans of events and cancellations sent from other traces."""
        links = []
        for message in self.item.messages:
            traceparent = getattr(message, "traceparent", None)
            if traceparent != self.traceparent and isinstance(message, _SIGNALS):
                link = link_to(traceparent)
                if link is not None:
                    links.append(link)
        return links

    def stamp(self, changes: TurnChanges) -> None:
        """The work this turn sends out is a child of the turn's span: activities, child
        starts and cancellations (continue-as-new keeps the workflow's trace)."""
        traceparent = self.span_traceparent
        if traceparent is None:
            return
        changes.activity_tasks = [_traced(task, traceparent) for task in changes.activity_tasks]
        changes.orchestrator_messages = [
            _traced_message(scheduled, traceparent, changes.instance_id)
            for scheduled in changes.orchestrator_messages
        ]

    def finish(self, tracer: Tracer | None, result: TurnResult, now_ms: int) -> None:
        """Outcome, final name and version, and ERROR when the turn or the execution failed;
        the turn that ends an execution also emits its ``duro.orchestration`` span."""
        decision = result.decision
        if decision is not None:
            self.name, self.version = decision.changes.name, decision.changes.version
        span = self.span
        if span is None or tracer is None:
            return
        span.set_attribute("duro.turn.outcome", result.outcome.value)
        if decision is not None:  # a first turn's batch says 0: no execution yet
            span.set_attribute("duro.execution_id", decision.changes.execution_id)
        if self.name:
            span.set_attribute("duro.orchestration.name", self.name)
        if self.version:
            span.set_attribute("duro.orchestration.version", self.version)
        if result.error is not None:
            fail_span_with(span, result.error)
        if decision is None or result.outcome not in _ENDING_OUTCOMES:
            return
        changes = decision.changes
        if changes.error is not None and result.outcome is TurnOutcome.FAILED:
            fail_span(span, changes.error)
        self._orchestration_span(tracer, result.outcome, changes, now_ms)

    def _orchestration_span(
        self, tracer: Tracer, outcome: TurnOutcome, changes: TurnChanges, now_ms: int
    ) -> None:
        """A span over the whole execution, from its start to this turn: emitted when it ends,
        since an execution outlives any one process."""
        first = changes.new_events[0] if changes.new_events else None
        started = first if isinstance(first, OrchestrationStarted) else self._started
        start_ms = started.ts if started is not None else now_ms
        attributes = self._attributes()
        attributes["duro.execution_id"] = changes.execution_id
        attributes["duro.orchestration.outcome"] = outcome.value
        del attributes["duro.messages"]
        span = tracer.start_span(
            "duro.orchestration",
            context=parent_context(self.traceparent),
            attributes=attributes,
            start_time=start_ms * 1_000_000,
        )
        if outcome is TurnOutcome.FAILED and changes.error is not None:
            fail_span(span, changes.error)
        span.end(end_time=max(now_ms, start_ms) * 1_000_000)

    # -- metrics --------------------------------------------------------------------------------

    def record(
        self,
        meters: Instruments,
        result: TurnResult,
        seconds: float,
        now_ms: int,
        *,
        poison: bool,
    ) -> None:
        name = self.name
        attributes: Attributes = {
            "duro.orchestration.name": name,
            "duro.turn.outcome": result.outcome.value,
        }
        meters.turns.add(1, attributes)
        meters.turn_duration.record(seconds, attributes)
        for message in self.item.messages:
            if isinstance(message, TimerFiredMessage):
                meters.timer_lateness.record(
                    max(0, now_ms - message.fire_at) / 1000, {"duro.orchestration.name": name}
                )
        if poison:
            meters.poison_messages.add(len(self.item.messages), {"duro.queue": "orchestrator"})
        decision = result.decision
        if decision is None:
            return
        if decision.replayed_events:
            meters.replayed_events.record(
                decision.replayed_events, {"duro.orchestration.name": name}
            )
        if result.outcome not in _COMMITTED:
            return
        if result.outcome is TurnOutcome.COMPLETED:
            meters.completed.add(1, {"duro.orchestration.name": name})
        elif result.outcome is TurnOutcome.FAILED:
            meters.failed.add(1, _failure_attributes(name, decision.changes.error))
        record_attempts(meters, decision.attempts)


_SIGNALS = (RaiseEventMessage, EnqueueEventMessage, CancelOrchestrationMessage)
"""Messages a client sends into a running workflow, perhaps from another trace."""
_ENDING_OUTCOMES = frozenset(
    {TurnOutcome.COMPLETED, TurnOutcome.FAILED, TurnOutcome.CONTINUED_AS_NEW}
)
_COMMITTED = frozenset(
    {
        TurnOutcome.RUNNING,
        TurnOutcome.COMPLETED,
        TurnOutcome.FAILED,
        TurnOutcome.CONTINUED_AS_NEW,
        TurnOutcome.DISCARDED,
    }
)


def _failure_attributes(name: str, error: ErrorInfo | None) -> Attributes:
    attributes: Attributes = {"duro.orchestration.name": name}
    if error is not None:
        attributes["duro.error.category"] = error.category.value
        attributes["error.type"] = error.error_type
    return attributes


def record_attempts(meters: Instruments, attempts: Sequence[tuple[str, AttemptOutcome]]) -> None:
    for name, outcome in attempts:
        meters.activity_executions.add(
            1, {"duro.activity.name": name, "duro.activity.outcome": outcome.value}
        )


def _traced(task: ActivityTask, traceparent: str) -> ActivityTask:
    return msgspec.structs.replace(task, traceparent=traceparent)


def _traced_message(
    scheduled: ScheduledMessage, traceparent: str, own_instance: str
) -> ScheduledMessage:
    message = scheduled.message
    if isinstance(message, StartOrchestrationMessage) or (
        isinstance(message, CancelOrchestrationMessage) and message.instance_id != own_instance
    ):
        return ScheduledMessage(
            message=msgspec.structs.replace(message, traceparent=traceparent),
            visible_at_ms=scheduled.visible_at_ms,
        )
    return scheduled


# -- activities ----------------------------------------------------------------------------------


class ActivityOutcome(enum.Enum):
    """How an activity function's run ended, as its worker saw it (``duro.activity.duration``)."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ObservedActivity:
    """One activity execution under observation: its span and its duration."""

    def __init__(self, task: ActivityTask, attempt: int) -> None:
        self.task = task
        self.attempt = attempt
        self.span: Span | None = None
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def traced(self, tracer: Tracer | None) -> Iterator[None]:
        if tracer is None:
            yield
            return
        task = self.task
        attributes: Attributes = {
            "duro.instance_id": task.instance_id,
            "duro.execution_id": task.execution_id,
            "duro.activity.name": task.name,
            "duro.activity.attempt": self.attempt,
        }
        if task.orchestration_name:
            attributes["duro.orchestration.name"] = task.orchestration_name
        if task.orchestration_version:
            attributes["duro.orchestration.version"] = task.orchestration_version
        with tracer.start_as_current_span(
            "duro.activity",
            context=parent_context(task.traceparent),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            self._started = time.perf_counter()
            self.span = span
            try:
                yield
            except Exception as exc:
                fail_span_with(span, exc)
                raise
            except BaseException:  # cancelled: withdrawn, or the runtime is shutting down
                span.set_attribute("duro.activity.outcome", ActivityOutcome.CANCELLED.value)
                raise

    def ended(self, error: ErrorInfo | None, cancelled: bool) -> ActivityOutcome:
        if cancelled:
            outcome = ActivityOutcome.CANCELLED
        elif error is not None:
            outcome = ActivityOutcome.FAILED
        else:
            outcome = ActivityOutcome.COMPLETED
        span = self.span
        if span is not None:
            span.set_attribute("duro.activity.outcome", outcome.value)
            if error is not None and not cancelled:
                fail_span(span, error)
        return outcome

    def record(self, meters: Instruments, outcome: ActivityOutcome) -> None:
        task = self.task
        meters.activity_duration.record(
            time.perf_counter() - self._started,
            {"duro.activity.name": task.name, "duro.activity.outcome": outcome.value},
        )

    def record_start(self, meters: Instruments, now_ms: int) -> None:
        task = self.task
        if task.scheduled_at_ms > 0:
            meters.activity_queue_wait.record(
                max(0, now_ms - task.scheduled_at_ms) / 1000, {"duro.activity.name": task.name}
            )


__all__ = [
    "ActivityOutcome",
    "ObservedActivity",
    "ObservedTurn",
    "Telemetry",
    "TurnOutcome",
    "TurnResult",
    "committed_outcome",
    "record_attempts",
]
