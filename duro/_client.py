"""``Client``: start, signal, inspect and manage orchestration instances."""

from __future__ import annotations

import contextlib
import time
import typing
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio
import msgspec
from opentelemetry.trace import SpanKind, TracerProvider

from ._bulk import (
    DeleteProgress,
    PruneProgress,
    children_of,
    delete_instances,
    finished_states,
    prune_executions_all,
)
from ._errors import (
    InstanceFinishedError,
    InstanceNotFailedError,
    InstanceNotFoundError,
    InstanceStillRunningError,
    ProviderError,
    WaitTimeoutError,
)
from ._history import HistoryEvent, OrchestrationStarted
from ._history_file import ExportedKv, HistoryFile
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
from ._serde import decode, encode
from ._status import ExecutionInfo, InstanceTree, KvValue, OrchestrationStatus, State
from ._telemetry import Tracing, traceparent_of
from ._watch import watch_for
from .providers import (
    DeleteRequest,
    DeleteResult,
    IfExists,
    InstanceQuery,
    InstanceRecord,
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
_POLL_START = 0.005
_POLL_MAX = 0.05


def _name_of(target: str | Callable[..., Any], registry: Registry | None) -> str:
    if isinstance(target, str):
        return target
    if registry is not None and registry.knows(target):
        return registry.name_of(target)
    # Decorators keep the function, so its registered name is its __name__ unless overridden.
    return getattr(target, "__name__", repr(target))


def _to_datetime(ms: int | None) -> datetime | None:
    return None if not ms else datetime.fromtimestamp(ms / 1000, UTC)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _status_of(
    instance_id: str, record: InstanceRecord | None, output_type: Any = Any
) -> OrchestrationStatus[Any]:
    if record is None:
        return OrchestrationStatus(
            instance_id=instance_id, state=State.NOT_FOUND, output_type=output_type
        )
    return OrchestrationStatus(
        instance_id=instance_id,
        state=record.state,
        name=record.name,
        version=record.version,
        execution_id=record.execution_id,
        output_json=record.output,
        error=record.error,
        custom_status_json=record.custom_status,
        custom_status_version=record.custom_status_version,
        parent_instance_id=record.parent_instance_id,
        created_at=_to_datetime(record.created_at_ms),
        updated_at=_to_datetime(record.updated_at_ms),
        output_type=output_type,
    )


class Client(ScheduleMethods):
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

    async def _require(self, instance_id: str) -> InstanceRecord:
        validate_instance_id(instance_id)
        record = await self.store.read_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        return record

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

    # -- reading state --------------------------------------------------------------------------

    @overload
    async def get_status(
        self, instance_id: str, *, output_type: type[T]
    ) -> OrchestrationStatus[T]: ...
    @overload
    async def get_status(
        self, instance_id: str, *, output_type: UnionType
    ) -> OrchestrationStatus[Any]: ...
    @overload
    async def get_status(self, instance_id: str) -> OrchestrationStatus[Any]: ...

    async def get_status(
        self, instance_id: str, *, output_type: Any = Any
    ) -> OrchestrationStatus[Any]:
        """Current status; ``State.NOT_FOUND`` for unknown ids. ``output`` decodes as
        ``output_type`` (builtins by default)."""
        validate_instance_id(instance_id)
        record = await self.store.read_instance(instance_id)
        return _status_of(instance_id, record, output_type)

    @overload
    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0, *, output_type: type[T]
    ) -> OrchestrationStatus[T]: ...
    @overload
    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0, *, output_type: UnionType
    ) -> OrchestrationStatus[Any]: ...
    @overload
    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0
    ) -> OrchestrationStatus[Any]: ...

    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0, *, output_type: Any = Any
    ) -> OrchestrationStatus[Any]:
        """Wait until the instance completes or fails; ``WaitTimeoutError`` after ``timeout``
        (real seconds), ``InstanceNotFoundError`` at once for an id the store does not know.

        ``output_type`` types and decodes ``status.output``:
        ``await client.wait_for_orchestration(id, output_type=Receipt)`` is an
        ``OrchestrationStatus[Receipt]``.
        """
        return await self._wait(
            instance_id,
            timeout,
            lambda s: s.state.is_terminal,
            "to finish",
            ending_only=True,
            output_type=output_type,
        )

    @overload
    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
        *,
        output_type: type[T],
    ) -> OrchestrationStatus[T]: ...
    @overload
    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
        *,
        output_type: UnionType,
    ) -> OrchestrationStatus[Any]: ...
    @overload
    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
    ) -> OrchestrationStatus[Any]: ...

    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
        *,
        output_type: Any = Any,
    ) -> OrchestrationStatus[Any]:
        """Wait until the state or custom status differs from ``last_seen`` (or it ends).

        Same errors as ``wait_for_orchestration``; ``output_type`` as there.
        """
        seen_state = last_seen.state if last_seen else State.NOT_FOUND
        seen_version = last_seen.custom_status_version if last_seen else 0
        return await self._wait(
            instance_id,
            timeout,
            lambda s: (
                s.state is not seen_state
                or s.custom_status_version != seen_version
                or s.state.is_terminal
            ),
            "to change status",
            output_type=output_type,
        )

    async def _wait(
        self,
        instance_id: str,
        timeout: float | timedelta,
        done: Callable[[OrchestrationStatus[Any]], bool],
        what: str,
        *,
        ending_only: bool = False,
        output_type: Any = Any,
    ) -> OrchestrationStatus[Any]:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        deadline = time.monotonic() + seconds
        delay = _POLL_START
        watch = watch_for(self.store)
        state = "unknown"
        while True:
            changed = watch.event(instance_id, ending_only=ending_only)  # before reading
            try:
                status = await self.get_status(instance_id, output_type=output_type)
            except ProviderError as exc:
                # One poll of many: a store that is briefly busy or throttling only delays it.
                if not exc.retryable or time.monotonic() >= deadline:
                    raise
            else:
                if status.state is State.NOT_FOUND:
                    # Nothing will ever start it on its own: waiting out the timeout helps
                    # nobody.
                    raise InstanceNotFoundError(instance_id)
                if done(status):
                    return status
                state = status.state.value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"instance {instance_id!r} did not {what.removeprefix('to ')} within "
                    f"{seconds} s (state: {state})"
                )
            # A runtime in this process wakes us at once; polling covers every other writer.
            with anyio.move_on_after(min(delay, remaining)):
                await changed.wait()
            delay = min(delay * 2, _POLL_MAX)

    @overload
    async def get_value(self, instance_id: str, key: str, *, type: type[T]) -> T | None: ...
    @overload
    async def get_value(self, instance_id: str, key: str, default: T, *, type: type[T]) -> T: ...
    @overload
    async def get_value(
        self, instance_id: str, key: str, default: Any = None, *, type: UnionType
    ) -> Any: ...
    @overload
    async def get_value(self, instance_id: str, key: str, default: Any = None) -> Any: ...

    async def get_value(
        self, instance_id: str, key: str, default: Any = None, *, type: Any = Any
    ) -> Any:
        """One value of the instance's durable KV (``ctx.kv``) decoded as ``type`` (builtins
        by default); ``default`` (None) if absent."""
        validate_instance_id(instance_id)
        entry = await self.store.get_kv_value(instance_id, key)
        if entry is None:
            return default
        return decode(entry.value, type, what=f"KV value {key!r}")

    @overload
    async def get_values(
        self, instance_id: str, *, with_updated_at: Literal[False] = False
    ) -> dict[str, Any]: ...
    @overload
    async def get_values(
        self, instance_id: str, *, with_updated_at: Literal[True]
    ) -> dict[str, KvValue]: ...

    async def get_values(
        self, instance_id: str, *, with_updated_at: bool = False
    ) -> dict[str, Any] | dict[str, KvValue]:
        """Every KV entry of the instance, decoded; with ``with_updated_at=True`` each as a
        ``KvValue`` that also says when it was last set."""
        validate_instance_id(instance_id)
        entries = await self.store.get_kv_items(instance_id)
        if not with_updated_at:
            return {k: decode(v.value, what=f"KV value {k!r}") for k, v in entries.items()}
        return {
            k: KvValue(
                value=decode(v.value, what=f"KV value {k!r}"), updated_at=_at(v.updated_at_ms)
            )
            for k, v in entries.items()
        }

    @overload
    async def wait_for_value(
        self, instance_id: str, key: str, *, timeout: float | timedelta = 30.0, type: type[T]
    ) -> T: ...
    @overload
    async def wait_for_value(
        self, instance_id: str, key: str, *, timeout: float | timedelta = 30.0, type: UnionType
    ) -> Any: ...
    @overload
    async def wait_for_value(
        self, instance_id: str, key: str, *, timeout: float | timedelta = 30.0
    ) -> Any: ...

    async def wait_for_value(
        self,
        instance_id: str,
        key: str,
        *,
        timeout: float | timedelta = 30.0,
        type: Any = Any,
    ) -> Any:
        """Wait until the instance's KV holds ``key`` and return its value, decoded as
        ``type``; ``WaitTimeoutError`` after ``timeout`` (real seconds).

        Waits for an instance that does not exist yet too (another party may start it): a
        wrong id shows as the timeout, whose message says whether the instance exists.
        """
        validate_instance_id(instance_id)
        check_name(key, "a KV key")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        deadline = time.monotonic() + seconds
        delay = _POLL_START
        watch = watch_for(self.store)
        while True:
            changed = watch.event(instance_id)  # before reading
            try:
                entry = await self.store.get_kv_value(instance_id, key)
            except ProviderError as exc:
                if not exc.retryable or time.monotonic() >= deadline:
                    raise
            else:
                if entry is not None:
                    return decode(entry.value, type, what=f"KV value {key!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = (await self.get_status(instance_id)).state.value
                raise WaitTimeoutError(
                    f"instance {instance_id!r} set no KV value {key!r} within {seconds} s "
                    f"(state: {state})"
                )
            with anyio.move_on_after(min(delay, remaining)):
                await changed.wait()
            delay = min(delay * 2, _POLL_MAX)

    async def get_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        """Recorded events of one execution (default: the current one)."""
        validate_instance_id(instance_id)
        return await self.store.read_history(instance_id, execution_id)

    async def export_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> HistoryFile:
        """One execution's history (default: the current one) with the instance's durable
        map, ready to ``write`` as a versioned JSON file for ``duro.testing.replay``.

        ``InstanceNotFoundError`` for an id the store does not know.
        """
        record = await self._require(instance_id)
        execution = execution_id or record.execution_id
        events = await self.store.read_history(instance_id, execution)
        kv = await self.store.get_kv_items(instance_id)
        return HistoryFile(
            instance_id=instance_id,
            execution_id=execution,
            exported_at=datetime.now(UTC),
            kv={
                key: ExportedKv(value=msgspec.Raw(entry.value), updated_at_ms=entry.updated_at_ms)
                for key, entry in kv.items()
            },
            events=events,
        )

    # -- management -------------------------------------------------------------------------------

    async def list_instances(
        self,
        *,
        states: set[State] | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
    ) -> list[OrchestrationStatus[Any]]:
        """Instances matching the filters, newest first (all pages, up to ``limit``)."""
        results: list[OrchestrationStatus[Any]] = []
        continuation: str | None = None
        while len(results) < limit:
            page = await self.store.list_instances(
                InstanceQuery(
                    states=frozenset(states) if states else None,
                    name=name,
                    created_after_ms=_ms(created_after),
                    created_before_ms=_ms(created_before),
                    limit=limit - len(results),
                    continuation=continuation,
                )
            )
            results.extend(_status_of(r.instance_id, r) for r in page.instances)
            continuation = page.continuation
            if continuation is None:
                break
        return results

    async def list_executions(self, instance_id: str) -> list[ExecutionInfo]:
        """Every stored execution of the instance, oldest first, with its status: the first
        one, then one per ``continue_as_new`` or restart (pruned ones are gone).
        ``InstanceNotFoundError`` for an id the store does not know."""
        await self._require(instance_id)
        return [
            ExecutionInfo(
                execution_id=record.execution_id,
                status=record.status,
                started_at=_at(record.started_at_ms),
                completed_at=_to_datetime(record.completed_at_ms),
                event_count=record.event_count,
            )
            for record in await self.store.read_executions(instance_id)
        ]

    async def get_instance_tree(self, instance_id: str) -> InstanceTree:
        """The instance with its sub-orchestrations, recursively, each with its status.
        ``InstanceNotFoundError`` for an id the store does not know."""
        record = await self._require(instance_id)
        return await self._tree(record, {instance_id})

    async def _tree(self, record: InstanceRecord, seen: set[str]) -> InstanceTree:
        children = []
        for child in await children_of(self.store, record.instance_id):
            if child.instance_id not in seen:  # parent links never loop; be sure anyway
                seen.add(child.instance_id)
                children.append(await self._tree(child, seen))
        return InstanceTree(status=_status_of(record.instance_id, record), children=children)

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
            created_after_ms=_ms(created_after),
            created_before_ms=_ms(created_before),
            completed_before_ms=_ms(completed_before),
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
            created_after_ms=_ms(created_after),
            created_before_ms=_ms(created_before),
            min_execution_id=keep + 1,
            limit=page_size,
        )
        return await prune_executions_all(
            self.store,
            query,
            keep=keep,
            completed_before_ms=_ms(completed_before),
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
                completed_before_ms=_ms(completed_before),
            )
        )

    async def queue_depths(self) -> QueueDepths:
        """How many messages and work items the store holds, by kind (for monitoring)."""
        return await self.store.queue_depths()


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)
