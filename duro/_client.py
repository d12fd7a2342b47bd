"""``Client``: start, signal, inspect and manage orchestration instances."""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec
from opentelemetry.trace import SpanKind, TracerProvider

from ._bulk import (
    DeleteProgress,
    PruneProgress,
    delete_instances,
    finished_states,
    prune_executions_all,
)
from ._client_reads import InstanceReads, epoch_ms
from ._errors import (
    InstanceFinishedError,
    InstanceNotFailedError,
    InstanceNotFoundError,
    InstanceStillRunningError,
)
from ._history import OrchestrationStarted
from ._ids import validate_instance_id
from ._limits import check_name, check_reason
from ._messages import (
    CancelOrchestrationMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    RewindOrchestrationMessage,
    StartOrchestrationMessage,
)
from ._registry import Registry
from ._schedules._client_methods import ScheduleMethods
from ._serde import encode
from ._status import State
from ._telemetry import Tracing, traceparent_of
from .providers import (
    DeleteRequest,
    DeleteResult,
    IfExists,
    InstanceQuery,
    Provider,
    PruneRequest,
    PruneResult,
    QueueDepths,
    ScheduledMessage,
    StartOutcome,
    StartRequest,
)

if TYPE_CHECKING:
    from ._engine import OrchestrationContext

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the input of the started orchestration

_IF_EXISTS = frozenset(typing.get_args(IfExists))


def _name_of(target: str | Callable[..., Any], registry: Registry | None) -> str:
    if isinstance(target, str):
        return target
    if registry is not None and registry.knows(target):
        return registry.name_of(target)
    # Decorators keep the function, so its registered name is its __name__ unless overridden.
    return getattr(target, "__name__", repr(target))


class Client(InstanceReads, ScheduleMethods):
    """Talks to the store directly; needs no running ``Runtime`` in this process.

    Pass the ``registry`` to start orchestrations registered under a custom ``name=`` by
    function reference (otherwise the function's ``__name__`` is used).

    Starting, raising events, enqueueing and cancelling make a span each (kind ``PRODUCER``)
    on ``tracer_provider`` (default: the global one); its trace context travels with the
    message, so the workflow a start begins belongs to the caller's trace (a new trace when
    there is no current span).
    """

    def __init__(
        self,
        store: Provider,
        *,
        registry: Registry | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self._tracing = Tracing(tracer_provider)

    @contextlib.contextmanager
    def _span(self, name: str, instance_id: str, **attributes: str) -> Iterator[str | None]:
        """A producer span around one send; yields the ``traceparent`` to send along."""
        tracer = self._tracing.tracer()
        if tracer is None:
            yield None
            return
        with tracer.start_as_current_span(
            name,
            kind=SpanKind.PRODUCER,
            attributes={"duro.instance_id": instance_id, **attributes},
        ) as span:
            yield traceparent_of(span)

    # -- starting and signalling ---------------------------------------------------------------

    @overload
    async def start_orchestration(
        self,
        instance_id: str,
        orchestration: Callable[[OrchestrationContext, I], Coroutine[Any, Any, Any]],
        input: I,
        *,
        version: str | None = None,
        if_exists: IfExists = "fail",
    ) -> str: ...
    @overload
    async def start_orchestration(
        self,
        instance_id: str,
        orchestration: Callable[[OrchestrationContext], Coroutine[Any, Any, Any]]
        | Callable[[OrchestrationContext, None], Coroutine[Any, Any, Any]],
        input: None = None,
        *,
        version: str | None = None,
        if_exists: IfExists = "fail",
    ) -> str: ...
    @overload
    async def start_orchestration(
        self,
        instance_id: str,
        orchestration: str,
        input: Any = None,
        *,
        version: str | None = None,
        if_exists: IfExists = "fail",
    ) -> str: ...

    async def start_orchestration(
        self,
        instance_id: str,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        version: str | None = None,
        if_exists: IfExists = "fail",
    ) -> str:
        """Start a new instance. Called with the function, a type checker checks ``input``
        against its parameter; without ``version`` the worker picks the latest registered
        version.

        ``if_exists`` says what happens when the id is taken (pending, running or finished):
        ``"fail"`` raises ``InstanceAlreadyExistsError``; ``"use_existing"`` leaves that
        instance be (an idempotent start); ``"restart_if_finished"`` starts a COMPLETED or
        FAILED instance again as its next execution (with this input; KV and custom status
        cleared; the earlier histories kept) and raises ``InstanceAlreadyExistsError`` for a
        pending or running one. The check and the start are one atomic store operation.
        """
        if if_exists not in _IF_EXISTS:
            raise ValueError(f"if_exists must be one of {sorted(_IF_EXISTS)}, got {if_exists!r}")
        start, attributes = self._start_message(instance_id, orchestration, input, version)
        with self._span("duro.start_orchestration", instance_id, **attributes) as traceparent:
            start = msgspec.structs.replace(start, traceparent=traceparent)
            if if_exists == "fail":
                await self.store.start_orchestration(start)
            else:
                await self.store.start_instance(StartRequest(start=start, if_exists=if_exists))
        return instance_id

    def _start_message(
        self,
        instance_id: str,
        orchestration: str | Callable[..., Any],
        input: Any,
        version: str | None,
    ) -> tuple[StartOrchestrationMessage, dict[str, str]]:
        """The start of ``orchestration`` as ``instance_id``, and the span attributes it gets."""
        validate_instance_id(instance_id)
        name = _name_of(orchestration, self.registry)
        raw = encode(input, what=f"input of orchestration {name!r}")
        attributes = {"duro.orchestration.name": name}
        if version is not None:
            attributes["duro.orchestration.version"] = version
        start = StartOrchestrationMessage(
            instance_id=instance_id, name=name, version=version, input=raw
        )
        return start, attributes

    @overload
    async def start_with_event(
        self,
        instance_id: str,
        orchestration: Callable[[OrchestrationContext, I], Coroutine[Any, Any, Any]],
        input: I,
        event_name: str,
        data: Any = None,
        *,
        version: str | None = None,
    ) -> bool: ...
    @overload
    async def start_with_event(
        self,
        instance_id: str,
        orchestration: str,
        input: Any,
        event_name: str,
        data: Any = None,
        *,
        version: str | None = None,
    ) -> bool: ...

    async def start_with_event(
        self,
        instance_id: str,
        orchestration: str | Callable[..., Any],
        input: Any,
        event_name: str,
        data: Any = None,
        *,
        version: str | None = None,
    ) -> bool:
        """Start the instance if it does not exist, and deliver external event
        ``event_name`` (``ctx.wait_for_event``) to it either way, in one atomic store
        operation: a new instance finds the event waiting from its first turn, and many
        callers racing on one id make one instance that receives every event.

        Returns True when this call started the instance. An existing instance is left as it
        is, finished or not (an event for a finished instance is dropped).
        """
        check_name(event_name, "an event name")
        start, attributes = self._start_message(instance_id, orchestration, input, version)
        raw = encode(data, what=f"data of event {event_name!r}")
        attributes["duro.event.name"] = event_name
        with self._span("duro.start_with_event", instance_id, **attributes) as traceparent:
            start = msgspec.structs.replace(start, traceparent=traceparent)
            event = RaiseEventMessage(
                instance_id=instance_id, name=event_name, data=raw, traceparent=traceparent
            )
            outcome = await self.store.start_instance(
                StartRequest(start=start, if_exists="use_existing", messages=[event])
            )
        return outcome is StartOutcome.STARTED

    async def _require_running(self, instance_id: str, what: str) -> None:
        # A message sent as the instance ends is still dropped by it; this catches the rest.
        record = await self._require(instance_id)
        if record.state.is_terminal:
            raise InstanceFinishedError(instance_id, record.state.value, what)

    async def restart_orchestration(
        self, instance_id: str, *, new_instance_id: str | None = None, latest: bool = False
    ) -> str:
        """Start the instance's orchestration again with the same input: the input of its
        current execution (for an instance that continued as new, its latest one) and the
        version it ran, or the latest registered one with ``latest=True``. Returns the id of
        the instance that runs it.

        Without ``new_instance_id`` the instance itself runs again, as its next execution
        (like ``start_orchestration(..., if_exists="restart_if_finished")``): it must have
        COMPLETED or FAILED (``InstanceStillRunningError`` otherwise). With one, a new
        instance starts beside it, whatever its state (``InstanceAlreadyExistsError`` if that
        id is taken). ``InstanceNotFoundError`` for an unknown ``instance_id``; an instance
        that never ran a turn has no recorded input yet and raises ``InstanceStillRunningError``.
        """
        record = await self._require(instance_id)
        in_place = new_instance_id is None
        if record.state is State.PENDING or (in_place and not record.state.is_terminal):
            raise InstanceStillRunningError(
                instance_id, "restart it once it has completed or failed"
            )
        history = await self.store.read_history(instance_id, record.execution_id)
        started = next((e for e in history if isinstance(e, OrchestrationStarted)), None)
        if started is None:  # a finished execution always starts with one
            raise InstanceNotFoundError(instance_id)
        target = instance_id if new_instance_id is None else new_instance_id
        await self.start_orchestration(
            target,
            started.name,
            started.input,
            version=None if latest else started.version,
            if_exists="restart_if_finished" if in_place else "fail",
        )
        return target

    async def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Deliver external event ``name`` (``ctx.wait_for_event``). Buffered until waited for.

        ``InstanceNotFoundError`` for an unknown id, ``InstanceFinishedError`` for an instance
        that has ended (the same for ``enqueue_event`` and ``cancel_orchestration``)."""
        check_name(name, "an event name")
        with self._span("duro.raise_event", instance_id, **{"duro.event.name": name}) as tp:
            await self._require_running(instance_id, "events")
            raw = encode(data, what=f"data of event {name!r}")
            await self.store.enqueue_orchestrator_message(
                ScheduledMessage(
                    message=RaiseEventMessage(
                        instance_id=instance_id, name=name, data=raw, traceparent=tp
                    )
                )
            )

    async def enqueue_event(self, instance_id: str, queue: str, data: Any = None) -> None:
        """Append a message to mailbox ``queue`` (``ctx.dequeue_event``), strictly FIFO."""
        check_name(queue, "a queue name")
        with self._span("duro.enqueue_event", instance_id, **{"duro.queue": queue}) as tp:
            await self._require_running(instance_id, "mailbox messages")
            raw = encode(data, what=f"message for queue {queue!r}")
            await self.store.enqueue_orchestrator_message(
                ScheduledMessage(
                    message=EnqueueEventMessage(
                        instance_id=instance_id, queue=queue, data=raw, traceparent=tp
                    )
                )
            )

    async def cancel_orchestration(self, instance_id: str, reason: str = "cancelled") -> None:
        """Cancel an instance: it fails with category CANCELLED; its running activities are
        told to stop and its sub-orchestrations are cancelled too."""
        check_reason(reason)
        with self._span("duro.cancel_orchestration", instance_id) as tp:
            await self._require_running(instance_id, "cancellations")
            await self.store.enqueue_orchestrator_message(
                ScheduledMessage(
                    message=CancelOrchestrationMessage(
                        instance_id=instance_id, reason=reason, traceparent=tp
                    )
                )
            )

    async def rewind_orchestration(self, instance_id: str, reason: str | None = None) -> None:
        """Take a FAILED instance back to before the step that failed it and run it on from
        there: the failed activity or sub-orchestration runs again (a failed child is rewound
        too), and everything that succeeded keeps its recorded result. The history keeps the
        failure and records the rewind (``ExecutionRewound``, with ``reason``).

        Takes effect at the instance's next turn. ``InstanceNotFoundError`` for an unknown id;
        ``InstanceNotFailedError`` unless the instance has FAILED.
        """
        if reason is not None:
            check_reason(reason)
        with self._span("duro.rewind_orchestration", instance_id) as tp:
            record = await self._require(instance_id)
            if record.state is not State.FAILED:
                raise InstanceNotFailedError(instance_id, record.state.value)
            await self.store.enqueue_orchestrator_message(
                ScheduledMessage(
                    message=RewindOrchestrationMessage(
                        instance_id=instance_id, reason=reason, traceparent=tp
                    )
                )
            )

    async def delete_instances(
        self,
        *,
        states: set[State] | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        completed_before: datetime | None = None,
        limit: int | None = None,
        page_size: int = 100,
        on_progress: DeleteProgress | None = None,
    ) -> int:
        """Delete every finished instance the filters select (``states``: COMPLETED and
        FAILED by default, and only those), each with its sub-orchestrations as
        ``delete_instance`` does; returns how many instances were deleted, sub-orchestrations
        included.

        Pages through the store ``page_size`` instances at a time and deletes one tree at a
        time, so it is safe while runtimes work: a tree in which anything still runs is left
        (``on_progress`` hears None for it). ``limit`` caps the selected instances deleted.
        ``on_progress(instance_id, result)`` is called after each instance examined.
        """
        query = InstanceQuery(
            states=finished_states(states),
            name=name,
            created_after_ms=epoch_ms(created_after),
            created_before_ms=epoch_ms(created_before),
            completed_before_ms=epoch_ms(completed_before),
            limit=page_size,
        )
        return await delete_instances(self.store, query, limit=limit, on_progress=on_progress)

    async def prune_executions_all(
        self,
        *,
        keep: int = 1,
        completed_before: datetime | None = None,
        states: set[State] | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        page_size: int = 100,
        on_progress: PruneProgress | None = None,
    ) -> PruneResult:
        """``prune_executions`` for every instance with earlier executions (it continued as
        new or was restarted), optionally only those the filters select: each
        keeps its ``keep`` newest executions (the current one always), and with
        ``completed_before`` only older completions go. Returns the totals; pages like
        ``delete_instances`` and calls ``on_progress(instance_id, result)`` per instance."""
        if keep < 1:
            raise ValueError("keep must be at least 1 (the current execution is always kept)")
        query = InstanceQuery(
            states=frozenset(states) if states else None,
            name=name,
            created_after_ms=epoch_ms(created_after),
            created_before_ms=epoch_ms(created_before),
            min_execution_id=keep + 1,
            limit=page_size,
        )
        return await prune_executions_all(
            self.store,
            query,
            keep=keep,
            completed_before_ms=epoch_ms(completed_before),
            limit=limit,
            on_progress=on_progress,
        )

    async def delete_instance(self, instance_id: str, force: bool = False) -> DeleteResult:
        """Delete an instance with its sub-orchestrations. Running ones need ``force=True``."""
        validate_instance_id(instance_id)
        return await self.store.delete_instance(DeleteRequest(instance_id=instance_id, force=force))

    async def prune_executions(
        self,
        instance_id: str,
        *,
        keep_last: int = 1,
        completed_before: datetime | None = None,
    ) -> PruneResult:
        """Delete old continue-as-new executions (history only; KV is kept)."""
        validate_instance_id(instance_id)
        return await self.store.prune_executions(
            PruneRequest(
                instance_id=instance_id,
                keep_last=keep_last,
                completed_before_ms=epoch_ms(completed_before),
            )
        )

    async def queue_depths(self) -> QueueDepths:
        """How many messages and work items the store holds, by kind (for monitoring)."""
        return await self.store.queue_depths()
