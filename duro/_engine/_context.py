"""``OrchestrationContext``: the only door from orchestration code to the outside world."""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, overload

import msgspec

from .._errors import ActivityFailedError, UnregisteredError
from .._history import (
    NULL,
    ActivityScheduled,
    CustomStatusSet,
    EventSent,
    OrchestrationChained,
    Raw,
    SubOrchestrationScheduled,
    TimerCreated,
)
from .._ids import validate_instance_id
from .._limits import check_name
from .._registry import Registry
from .._retry import RetryPolicy
from .._serde import decode, encode
from .._status import ErrorCategory, ErrorInfo
from .._system_steps import KV_GET_FROM, KvRead
from ._arrivals import Arrivals
from ._attempts import AttemptOutcome, Attempts
from ._futures import DurableFuture, JoinFuture, SelectFuture
from ._identity import Identity
from ._kv import DurableKV
from ._outcomes import ContinueAsNewSignal
from ._recorder import Recorder
from ._scheduler import Scheduler
from ._state import DurableState
from ._steps import ActivityFuture, Steps

if TYPE_CHECKING:
    # Annotations only: the overloads below name the activity context so a type checker can
    # tell an activity from an orchestration. Nothing of the shell is imported at run time.
    from .._runtime._activity_context import ActivityContext

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the input of the called function
R = TypeVar("R")

MAX_CUSTOM_STATUS_BYTES = 64 * 1024
_GUID_NAMESPACE = uuid.UUID("4f1c2a9e-6b0d-4c57-9a3e-8d2f1b7c5e60")

Joinable = DurableFuture[Any] | Coroutine[Any, Any, Any]
"""What ``join`` and ``select`` take: durable futures and coroutines of branches."""


class _ReplaySafeLogger(logging.LoggerAdapter[logging.Logger]):
    """Drops records while replaying, so each message is logged once per real execution.

    Each message starts with ``[instance id]`` (also the record's ``instance_id`` attribute), so
    a plain log format still tells which instance wrote it."""

    def __init__(self, logger: logging.Logger, instance_id: str, recorder: Recorder) -> None:
        super().__init__(logger, {"instance_id": instance_id})
        self._recorder = recorder
        self._prefix = f"[{instance_id}] "

    def isEnabledFor(self, level: int) -> bool:
        return not self._recorder.replaying and self.logger.isEnabledFor(level)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        msg, kwargs = super().process(msg, kwargs)
        return self._prefix + str(msg), kwargs


MAX_TIMER_SECONDS = 100 * 366 * 24 * 3600
"""A century: longer delays are bugs (and past what a store's integer times can hold)."""


def _seconds(delay: float | timedelta) -> float:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not 0 <= seconds <= MAX_TIMER_SECONDS:  # also refuses NaN
        raise ValueError(
            f"a timer delay must be between 0 and {MAX_TIMER_SECONDS} seconds, got {seconds}"
        )
    return seconds


_SYSTEM_RETRY = RetryPolicy(max_attempts=5, initial_interval=1.0)
"""For duro's own steps: a store that is briefly unavailable delays them, never fails them."""


@dataclass(frozen=True, slots=True)
class _Step:
    """An activity call, as each attempt of it is scheduled."""

    name: str
    input: Any
    output_type: Any
    tag: str | None
    session: str | None
    heartbeat_timeout_ms: int | None


def _heartbeat_ms(timeout: float | timedelta | None) -> int | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not 0 < seconds <= MAX_TIMER_SECONDS:  # also refuses NaN
        raise ValueError(f"heartbeat_timeout must be a positive number of seconds, got {seconds}")
    return max(1, round(seconds * 1000))


class OrchestrationContext:
    """Passed to every orchestration. All its methods are deterministic and replay-safe.

    ``schedule_*`` methods record the step at once and return a durable future; ``await`` it
    (directly, or through ``join`` / ``select``). Never await anything else.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        registry: Registry,
        recorder: Recorder,
        scheduler: Scheduler,
        steps: Steps,
        arrivals: Arrivals,
        state: DurableState,
        attempts: Attempts,
    ) -> None:
        # The context keeps no state of its own: each call goes to the collaborator that owns
        # what it touches (built by Execution, one set per execution).
        self._identity = identity
        self._registry = registry
        self._recorder = recorder
        self._scheduler = scheduler
        self._steps = steps
        self._arrivals = arrivals
        self._state = state
        self._attempts = attempts
        self.kv = DurableKV(recorder, state, self._read_kv_from)
        self.logger: logging.LoggerAdapter[logging.Logger] = _ReplaySafeLogger(
            logging.getLogger(f"duro.orchestration.{identity.name}"), identity.instance_id, recorder
        )

    # -- identity ------------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """This instance's id."""
        return self._identity.instance_id

    @property
    def execution_id(self) -> int:
        """1 for the first execution, one more after each ``continue_as_new``."""
        return self._identity.execution_id

    @property
    def orchestration_name(self) -> str:
        """The name the orchestration is registered under."""
        return self._identity.name

    @property
    def version(self) -> str:
        """The orchestration version this instance runs (recorded when it started)."""
        return self._identity.version

    @property
    def parent_instance_id(self) -> str | None:
        """The parent's id for a sub-orchestration, else None."""
        started = self._recorder.started
        return started.parent.instance_id if started and started.parent else None

    @property
    def is_replaying(self) -> bool:
        """True exactly while re-executing steps already recorded in history."""
        return self._recorder.replaying

    # -- deterministic helpers -----------------------------------------------------------------

    def utc_now(self) -> datetime:
        """The time of the turn being executed (recorded, so replay sees the same value)."""
        return datetime.fromtimestamp(self._recorder.now_ms / 1000, UTC)

    def new_guid(self) -> uuid.UUID:
        """A UUID that is unique per call and identical on replay."""
        identity = self._identity
        number = self._state.next_guid_number()
        return uuid.uuid5(
            _GUID_NAMESPACE, f"{identity.instance_id}/{identity.execution_id}/{number}"
        )

    def set_custom_status(self, value: Any) -> None:
        """Publish a small JSON value clients can read (``status.custom_status``); None clears."""
        raw = encode(value, what="custom status", limit=MAX_CUSTOM_STATUS_BYTES)
        self._recorder.emit(CustomStatusSet(event_id=0, ts=0, seq=0, value=raw))
        self._state.set_custom_status(None if value is None else bytes(raw))

    @overload
    def get_custom_status(self, *, type: type[T]) -> T | None: ...
    @overload
    def get_custom_status(self, *, type: UnionType) -> Any: ...
    @overload
    def get_custom_status(self) -> Any: ...

    def get_custom_status(self, *, type: Any = Any) -> Any:
        """The last value this instance set with ``set_custom_status`` (carried across
        ``continue_as_new``), decoded as ``type`` (builtins by default); None if none."""
        raw = self._state.custom_status
        return None if raw is None else decode(raw, type, what="custom status")

    # -- activities ----------------------------------------------------------------------------

    # The overloads make a call by function typed end to end: the future holds what the
    # activity returns (async or plain def) and the input must match its parameter. Async
    # shapes come first: an async function also matches the plain one with R = a coroutine.
    @overload
    def schedule_activity(
        self,
        activity: Callable[[ActivityContext, I], Awaitable[R]],
        input: I,
        *,
        retry: RetryPolicy | None = None,
        tag: str | None = None,
        session: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> DurableFuture[R]: ...
    @overload
    def schedule_activity(
        self,
        activity: Callable[[ActivityContext, I], R],
        input: I,
        *,
        retry: RetryPolicy | None = None,
        tag: str | None = None,
        session: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> DurableFuture[R]: ...
    @overload
    def schedule_activity(
        self,
        activity: Callable[[ActivityContext], Awaitable[R]]
        | Callable[[ActivityContext, None], Awaitable[R]],
        input: None = None,
        *,
        retry: RetryPolicy | None = None,
        tag: str | None = None,
        session: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> DurableFuture[R]: ...
    @overload
    def schedule_activity(
        self,
        activity: Callable[[ActivityContext], R] | Callable[[ActivityContext, None], R],
        input: None = None,
        *,
        retry: RetryPolicy | None = None,
        tag: str | None = None,
        session: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> DurableFuture[R]: ...
    @overload
    def schedule_activity(
        self,
        activity: str,
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        tag: str | None = None,
        session: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> DurableFuture[Any]: ...

    def schedule_activity(
        self,
        activity: str | Callable[..., Any],
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        tag: str | None = None,
        session: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> DurableFuture[Any]:
        """Run an activity (by function or registered name); await the returned future.

        Called with the function, the future is typed with what it returns and a type checker
        checks ``input`` against its parameter; called by name, both are ``Any``.
        A failure raises ``duro.ActivityFailedError``. With ``retry``, failed attempts are retried
        after durable back-off timers. ``tag`` routes to workers serving that tag; ``session``
        pins every activity of that session to one worker. With ``heartbeat_timeout`` an
        attempt fails (retryably, ``error_type`` "ActivityHeartbeatTimeout") when its activity
        goes that long without calling ``ctx.heartbeat()``, even while its worker lives; the
        next attempt finds the last details in ``ctx.last_heartbeat_details``.
        """
        name = self._registry.name_of(activity, "activity")
        registered = self._registry.get_activity(name)
        if registered is None and tag is None:
            raise UnregisteredError("activity", name)
        output_type = registered.output_type if registered else Any
        raw = encode(input, what=f"input of activity {name!r}")
        step = _Step(
            name=name,
            input=raw,
            output_type=output_type,
            tag=tag,
            session=session,
            heartbeat_timeout_ms=_heartbeat_ms(heartbeat_timeout),
        )
        if retry is None:
            return self._schedule_attempt(step, 1)
        return self._scheduler.spawn(self._retry(step, retry), name=f"retry:{name}")

    def _read_kv_from(
        self, instance_id: str, key: str, default: Any, output_type: Any
    ) -> DurableFuture[Any]:
        """``ctx.kv.get_from``: a system activity reads the value, so the result is recorded
        and replay gets the same one."""
        step = _Step(
            name=KV_GET_FROM,
            input=encode(KvRead(instance_id=instance_id, key=key)),
            output_type=list[msgspec.Raw],
            tag=None,
            session=None,
            heartbeat_timeout_ms=None,
        )

        async def read() -> Any:
            found: list[msgspec.Raw] = await self._retry(step, _SYSTEM_RETRY)
            if not found:
                return default
            return decode(found[0], output_type, what=f"KV value {key!r} of {instance_id!r}")

        return self._scheduler.spawn(read(), name=KV_GET_FROM)

    def _schedule_attempt(
        self, step: _Step, attempt: int, heartbeat_details: bytes | None = None
    ) -> ActivityFuture:
        seq = self._recorder.emit(
            ActivityScheduled(
                event_id=0,
                ts=0,
                seq=0,
                name=step.name,
                input=step.input,
                attempt=attempt,
                session=step.session,
                tag=step.tag,
                heartbeat_timeout_ms=step.heartbeat_timeout_ms,
                heartbeat_details=NULL if heartbeat_details is None else Raw(heartbeat_details),
            )
        )
        return self._steps.activity(seq, step.name, step.output_type)

    async def _retry(self, step: _Step, policy: RetryPolicy) -> Any:
        name = step.name
        attempt = 1
        details: bytes | None = None
        total = policy.total_timeout_seconds
        # Measured from the first attempt's start, in recorded time: replay gets the same one.
        deadline_ms = None if total is None else self._recorder.now_ms + round(total * 1000)
        while True:
            call = self._schedule_attempt(step, attempt, details)
            timed_out = False
            try:
                timeout, total_expires = self._attempt_limit(policy, deadline_ms)
                if timeout is None:
                    return await call
                index, value = await self.select(call, self.schedule_timer(timeout))
                if index == 0:
                    return value
                timed_out = True
                self._refine_attempt(call, AttemptOutcome.TIMED_OUT)
                message = (
                    f"the retry policy's total_timeout of {total} s passed during attempt {attempt}"
                    if total_expires
                    else f"attempt {attempt} did not finish within {timeout} s"
                )
                error = ErrorInfo(
                    category=ErrorCategory.APPLICATION,
                    error_type="ActivityTimeout",
                    message=message,
                    retryable=not total_expires,
                )
                failure = ActivityFailedError(name, error, attempts=attempt)
            except ActivityFailedError as exc:
                details = exc.heartbeat_details or details
                failure = ActivityFailedError(
                    name, exc.error, attempts=attempt, heartbeat_details=details
                )
            if attempt >= policy.max_attempts or not (
                failure.error.retryable and policy.is_retryable(failure.error.error_type)
            ):
                raise failure
            delay = policy.delay_after(attempt)
            if deadline_ms is not None and self._recorder.now_ms + delay * 1000 >= deadline_ms:
                raise failure  # the next attempt could not start before the deadline
            if not timed_out:  # a timed-out attempt is counted as such, retried or not
                self._refine_attempt(call, AttemptOutcome.RETRIED)
            if delay > 0:
                await self.schedule_timer(delay)
            attempt += 1

    def _attempt_limit(
        self, policy: RetryPolicy, deadline_ms: int | None
    ) -> tuple[float | None, bool]:
        """How long the next attempt may run, and whether that limit is the total deadline."""
        timeout = policy.timeout_seconds
        if deadline_ms is None:
            return timeout, False
        remaining = max(deadline_ms - self._recorder.now_ms, 0) / 1000
        if timeout is None or remaining <= timeout:
            return remaining, True
        return timeout, False

    def _refine_attempt(self, call: ActivityFuture, outcome: AttemptOutcome) -> None:
        if not self._recorder.replaying:
            self._attempts.refine(call.seq, outcome)

    # -- timers and events ---------------------------------------------------------------------

    def schedule_timer(self, delay: float | timedelta) -> DurableFuture[None]:
        """A durable timer: resolves ``delay`` after now, surviving restarts. Fires once."""
        fire_at = self._recorder.now_ms + round(_seconds(delay) * 1000)
        seq = self._recorder.emit(TimerCreated(event_id=0, ts=0, seq=0, fire_at=fire_at))
        return self._steps.timer(seq, fire_at)

    # No catch-all ``type: object`` overload: a checker would fall back to it whenever the
    # result is assigned to the wrong type, and let the mistake through.
    @overload
    def wait_for_event(self, name: str, *, type: type[T]) -> DurableFuture[T]: ...
    @overload
    def wait_for_event(self, name: str, *, type: UnionType) -> DurableFuture[Any]: ...
    @overload
    def wait_for_event(self, name: str) -> DurableFuture[Any]: ...

    def wait_for_event(self, name: str, *, type: Any = Any) -> DurableFuture[Any]:
        """The next external event ``name`` raised by ``Client.raise_event``, decoded as
        ``type`` (builtins by default).

        Events raised before anyone waits are buffered in history, so a later wait still gets
        them; several waits for one name take arrivals in order. Buffered events do not carry
        over ``continue_as_new`` (use ``dequeue_event`` for that).
        """
        check_name(name, "an event name")  # a longer one could never be raised
        return self._arrivals.wait_on(("event", name), type)

    @overload
    def dequeue_event(self, queue: str, *, type: type[T]) -> DurableFuture[T]: ...
    @overload
    def dequeue_event(self, queue: str, *, type: UnionType) -> DurableFuture[Any]: ...
    @overload
    def dequeue_event(self, queue: str) -> DurableFuture[Any]: ...

    def dequeue_event(self, queue: str, *, type: Any = Any) -> DurableFuture[Any]:
        """The next message of mailbox ``queue`` (``Client.enqueue_event``), strictly FIFO,
        decoded as ``type`` (builtins by default).

        Unconsumed messages are carried into the next execution by ``continue_as_new``.
        """
        check_name(queue, "a queue name")
        return self._arrivals.wait_on(("queue", queue), type)

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Send external event ``name`` with ``data`` to another instance (its
        ``ctx.wait_for_event``), as ``Client.raise_event`` does.

        Durable and exactly once: the step is recorded, and the event goes out with the commit
        of the turn that records it (never again on replay). An event for an instance that does
        not exist waits for it to be started; one for a finished instance is dropped.
        """
        self._send(instance_id, name, data, mailbox=False)

    def enqueue_event(self, instance_id: str, queue: str, data: Any = None) -> None:
        """Append ``data`` to mailbox ``queue`` of another instance (its
        ``ctx.dequeue_event``), as ``Client.enqueue_event`` does; durable and exactly once like
        ``raise_event``. A message for an instance that does not exist is dropped."""
        self._send(instance_id, queue, data, mailbox=True)

    def _send(self, instance_id: str, name: str, data: Any, *, mailbox: bool) -> None:
        validate_instance_id(instance_id)
        what = "a queue name" if mailbox else "an event name"
        check_name(name, what)
        raw = encode(data, what=f"data of {'message' if mailbox else 'event'} {name!r}")
        self._recorder.emit(
            EventSent(
                event_id=0, ts=0, seq=0, instance_id=instance_id, name=name, data=raw,
                mailbox=mailbox,
            )
        )  # fmt: skip

    # -- orchestrations ------------------------------------------------------------------------

    @overload
    def schedule_sub_orchestration(
        self,
        orchestration: Callable[[OrchestrationContext, I], Coroutine[Any, Any, R]],
        input: I,
        *,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> DurableFuture[R]: ...
    @overload
    def schedule_sub_orchestration(
        self,
        orchestration: Callable[[OrchestrationContext], Coroutine[Any, Any, R]]
        | Callable[[OrchestrationContext, None], Coroutine[Any, Any, R]],
        input: None = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> DurableFuture[R]: ...
    @overload
    def schedule_sub_orchestration(
        self,
        orchestration: str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> DurableFuture[Any]: ...

    def schedule_sub_orchestration(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> DurableFuture[Any]:
        """Run a child orchestration and await its result (typed like ``schedule_activity``).

        A failed child raises ``SubOrchestrationFailedError`` when awaited.

        The default child id is ``"<parent>:<execution>:<step>"``. Dropping the future (for
        example losing a ``select``) cancels the child.
        """
        name = self._registry.name_of(orchestration, "orchestration")
        registered = self._registry.get_orchestration(name)
        raw = encode(input, what=f"input of sub-orchestration {name!r}")
        seq_hint = self._recorder.peek_seq()
        identity = self._identity
        child_id = validate_instance_id(
            instance_id or f"{identity.instance_id}:{identity.execution_id}:{seq_hint}"
        )
        seq = self._recorder.emit(
            SubOrchestrationScheduled(
                event_id=0, ts=0, seq=0, name=name, instance_id=child_id, version=version, input=raw
            )
        )
        return self._steps.sub_orchestration(
            seq, name, child_id, registered.output_type if registered else Any
        )

    @overload
    def start_orchestration(
        self,
        orchestration: Callable[[OrchestrationContext, I], Coroutine[Any, Any, Any]],
        input: I,
        *,
        instance_id: str,
        version: str | None = None,
    ) -> None: ...
    @overload
    def start_orchestration(
        self,
        orchestration: Callable[[OrchestrationContext], Coroutine[Any, Any, Any]]
        | Callable[[OrchestrationContext, None], Coroutine[Any, Any, Any]],
        input: None = None,
        *,
        instance_id: str,
        version: str | None = None,
    ) -> None: ...
    @overload
    def start_orchestration(
        self,
        orchestration: str,
        input: Any = None,
        *,
        instance_id: str,
        version: str | None = None,
    ) -> None: ...

    def start_orchestration(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        instance_id: str,
        version: str | None = None,
    ) -> None:
        """Start another orchestration and do not wait for it (fire and forget, no parent link)."""
        name = self._registry.name_of(orchestration, "orchestration")
        raw = encode(input, what=f"input of orchestration {name!r}")
        self._recorder.emit(
            OrchestrationChained(
                event_id=0,
                ts=0,
                seq=0,
                name=name,
                instance_id=validate_instance_id(instance_id),
                version=version,
                input=raw,
            )
        )

    def _start_reporting(
        self, name: str, input: msgspec.Raw, *, instance_id: str, version: str | None, notify: str
    ) -> None:
        """``start_orchestration`` whose instance enqueues a ``RunEnded`` into ``notify``'s
        mailbox when it ends (how a schedule learns that its run finished)."""
        self._recorder.emit(
            OrchestrationChained(
                event_id=0,
                ts=0,
                seq=0,
                name=name,
                instance_id=validate_instance_id(instance_id),
                version=version,
                input=input,
                notify=notify,
            )
        )

    def continue_as_new(self, input: Any = None, *, version: str | None = None) -> NoReturn:
        """End this execution now and start a fresh one with ``input`` (empty history).

        No code after the call runs. KV, custom status and unconsumed ``dequeue_event``
        messages carry over; new instances of a newer version are picked up unless ``version``
        pins one.
        """
        raise ContinueAsNewSignal(encode(input, what="continue_as_new input"), version)

    # -- composition ---------------------------------------------------------------------------

    def _as_future(self, item: Joinable) -> DurableFuture[Any]:
        if isinstance(item, DurableFuture):
            return item
        if inspect.iscoroutine(item):
            return self._scheduler.spawn(item)
        raise TypeError(
            f"expected a durable future or a coroutine, got {type(item).__name__}; "
            "only ctx.* calls and async functions using ctx can be joined or selected"
        )

    # Futures of one result type give a typed list; a mix (or branches of several types)
    # falls through to the last overload and gives list[Any].
    @overload
    def join(
        self,
        futures: Iterable[DurableFuture[R] | Coroutine[Any, Any, R]],
        *,
        return_exceptions: Literal[False] = False,
    ) -> DurableFuture[list[R]]: ...
    @overload
    def join(
        self,
        futures: Iterable[DurableFuture[R] | Coroutine[Any, Any, R]],
        *,
        return_exceptions: Literal[True],
    ) -> DurableFuture[list[R | BaseException]]: ...
    @overload
    def join(
        self, futures: Iterable[Joinable], *, return_exceptions: bool = False
    ) -> DurableFuture[list[Any]]: ...

    def join(
        self, futures: Iterable[Joinable], *, return_exceptions: bool = False
    ) -> DurableFuture[list[Any]]:
        """Wait for all; results in argument order. Fails with the first failure in history
        order unless ``return_exceptions`` puts exceptions in place of results."""
        children = [self._as_future(f) for f in futures]
        return JoinFuture(self._scheduler, children, return_exceptions)

    def select(self, *futures: Joinable) -> DurableFuture[tuple[int, Any]]:
        """Wait for the first to finish in history order; returns ``(index, result)``.

        The others are cancelled: activities get cooperative cancellation, sub-orchestrations
        are cancelled, timers are dropped, branches stop where they are.
        """
        children = [self._as_future(f) for f in futures]
        return SelectFuture(self._scheduler, children)
