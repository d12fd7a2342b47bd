"""The replay engine: one live execution of an orchestration, driven by history.

Pure: no I/O, no clock, no anyio. The shell feeds it recorded history (``replay_event``),
then new messages (``apply_message``) and collects the turn (``finish_turn``). The instance
stays alive between turns, so a cached ``Execution`` only ever processes new messages.

How determinism is kept:

* Code runs only when a future resolves, and futures resolve only while the engine processes
  a history event. Ready tasks run in FIFO order. So the order of everything code does is a
  function of history.
* Every durable call emits an *action* (a history event template) into ``_pending``. When
  replaying, each recorded action event must match the next pending action, and a completion
  event may only be processed once every earlier action was matched. New actions are recorded
  right after the run that emitted them, so history interleaves exactly as code ran.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Coroutine
from typing import Any

import msgspec

from .._errors import (
    ActivityFailedError,
    NondeterminismError,
    NonDurableAwaitError,
    PayloadError,
    SubOrchestrationFailedError,
    TaskCancelledError,
    UnregisteredError,
)
from .._history import (
    ACTION_EVENTS,
    NULL,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    CarriedEvent,
    ContinuedAsNew,
    EventQueued,
    EventRaised,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    ParentRef,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    TaskCancelled,
    TimerCreated,
    TimerFired,
)
from .._messages import (
    ActivityResultMessage,
    AnyOrchestratorMessage,
    CancelOrchestrationMessage,
    ContinueAsNewMessage,
    EnqueueEventMessage,
    RaiseEventMessage,
    ScheduledMessage,
    StartOrchestrationMessage,
    SubOrchestrationResultMessage,
    TimerFiredMessage,
)
from .._records import KvEntry, TurnChanges
from .._registry import Registered, Registry
from .._serde import decode
from .._status import ErrorInfo, ExecutionStatus
from ._context import OrchestrationContext
from ._effects import record_side_effects
from ._futures import DurableFuture
from ._matching import describe, matches
from ._outcomes import (
    ContinueAsNewSignal,
    application_error,
    cancelled_error,
    configuration_error,
)
from ._tasks import (
    ActivityFuture,
    EventFuture,
    SubOrchestrationFuture,
    Task,
    TaskFuture,
    TimerFuture,
)


class Execution:
    """One execution of one orchestration instance, alive across turns."""

    def __init__(
        self,
        *,
        registry: Registry,
        orchestration: Registered,
        instance_id: str,
        execution_id: int,
        kv_snapshot: dict[str, KvEntry] | None = None,
    ) -> None:
        self.registry = registry
        self.orchestration = orchestration
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.history: list[HistoryEvent] = []
        self.replaying = True
        self.current_ts = 0
        self.current_task: Task | None = None
        self.outcome: OrchestrationCompleted | OrchestrationFailed | ContinuedAsNew | None = None
        self.parent: ParentRef | None = None
        self.kv: dict[str, KvEntry] = dict(kv_snapshot or {})
        self.custom_status: bytes | None = None
        self.guid_counter = 0
        self.ctx = OrchestrationContext(self)

        self._now_ms = 0
        self._next_seq = 1
        self._resolution_order = 0
        self._position = 0
        self._unprocessed: list[AnyOrchestratorMessage] = []
        self._tasks: list[Task] = []
        self._pending: deque[HistoryEvent] = deque()
        self._ready: deque[Task] = deque()
        self._futures: dict[int, DurableFuture[Any]] = {}
        self._waiters: dict[tuple[str, str], deque[EventFuture]] = {}
        self._buffers: dict[tuple[str, str], deque[tuple[int, msgspec.Raw]]] = {}
        self._turn = self._new_changes()
        self._turn_first_seq = 1

    # -- bookkeeping used by futures and the context -------------------------------------------

    def next_resolution_order(self, position: int | None = None) -> tuple[int, int]:
        """Sort key of a resolution: the history position that caused it, then a counter."""
        self._resolution_order += 1
        return (self._position if position is None else position, self._resolution_order)

    def peek_seq(self) -> int:
        """The seq the next action will get."""
        return self._next_seq

    def next_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    @property
    def now_ms(self) -> int:
        return self.current_ts

    @property
    def is_terminal(self) -> bool:
        return self.outcome is not None

    def emit(self, action: HistoryEvent) -> int:
        """Queue an action; returns its seq. The event id and time are filled when recorded."""
        task = self.current_task
        if task is not None and task.closing:
            raise TaskCancelledError(
                "a cancelled branch cannot schedule durable work",
                error=cancelled_error("cancelled branch", "TaskCancelledError"),
            )
        seq = self.next_seq()
        self._pending.append(msgspec.structs.replace(action, seq=seq))
        return seq

    def pending_changes(self) -> TurnChanges:
        """The turn being built (the shell adds replies that are not the code's doing)."""
        return self._turn

    def _new_changes(self) -> TurnChanges:
        return TurnChanges(
            instance_id=self.instance_id,
            execution_id=self.execution_id,
            name=self.orchestration.name,
            version=self.orchestration.version,
        )

    def register(self, seq: int, future: DurableFuture[Any]) -> None:
        self._futures[seq] = future

    # -- tasks ---------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "branch") -> TaskFuture:
        """Start ``coro`` as a branch; it runs eagerly until its first durable await."""
        future = TaskFuture(self)
        task = Task(coro, future, name)
        future.task = task
        self._tasks.append(task)
        self._step(task)
        return future

    def cancel_task(self, task: Task, reason: str) -> None:
        if task.future.done or task.closing:
            return
        task.closing = True
        previous, self.current_task = self.current_task, task
        try:
            task.coro.close()
        except BaseException:
            pass
        finally:
            self.current_task = previous
        for owned in list(task.owned):
            owned.cancel(reason)

    def _step(self, task: Task) -> None:
        if task.future.done or self.outcome is not None:
            return
        previous, self.current_task = self.current_task, task
        try:
            yielded = task.coro.send(None)
        except StopIteration as stop:
            task.future.set_result(stop.value)
        except ContinueAsNewSignal as signal:
            self._end(ContinuedAsNew(event_id=0, ts=0, input=signal.input, version=signal.version))
        except NondeterminismError as exc:
            self._fail(configuration_error(exc))
        except BaseException as exc:  # user code raised: the task (or the root) failed
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            task.future.set_exception(exc)
        else:
            if isinstance(yielded, DurableFuture):
                yielded.add_done_callback(functools.partial(self._wake, task))
            else:
                self._reject_foreign_await(task, yielded)
        finally:
            self.current_task = previous

    def _wake(self, task: Task, _future: DurableFuture[Any]) -> None:
        self._ready.append(task)

    def _reject_foreign_await(self, task: Task, yielded: object) -> None:
        cancel = getattr(yielded, "cancel", None)
        if callable(cancel):
            try:
                cancel()
            except Exception:
                pass
        what = type(yielded).__name__ if yielded is not None else "a bare yield"
        error = NonDurableAwaitError(
            f"orchestration {self.orchestration.name!r} awaited {what}, which is not durable. "
            "Orchestrations may only await ctx.* calls (use ctx.schedule_timer instead of "
            "sleeping, and activities for I/O)."
        )
        self._fail(configuration_error(error))
        try:
            task.coro.close()
        except BaseException:
            pass

    def _run_ready(self) -> None:
        while self._ready and self.outcome is None:
            self._step(self._ready.popleft())

    # -- outcome -------------------------------------------------------------------------------

    def _end(self, outcome: OrchestrationCompleted | OrchestrationFailed | ContinuedAsNew) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self._ready.clear()

    def _fail(self, error: ErrorInfo) -> None:
        self._end(OrchestrationFailed(event_id=0, ts=0, error=error))

    def _root_done(self, future: DurableFuture[Any]) -> None:
        exc = future.exception()
        if exc is None:
            from .._serde import encode

            try:
                output = encode(future.result(), what="orchestration output")
            except PayloadError as payload_exc:
                self._fail(application_error(payload_exc, retryable=False))
                return
            self._end(OrchestrationCompleted(event_id=0, ts=0, output=output))
        elif isinstance(exc, NondeterminismError | NonDurableAwaitError | UnregisteredError):
            self._fail(configuration_error(exc))
        elif isinstance(exc, TaskCancelledError):
            self._fail(exc.error)
        else:
            self._fail(application_error(exc))

    # -- replay --------------------------------------------------------------------------------

    def replay_event(self, event: HistoryEvent) -> None:
        """Feed one recorded event. Raises ``NondeterminismError`` on divergence."""
        position = event.event_id
        if self.outcome is not None and not self._pending:
            raise NondeterminismError(
                self.instance_id, position, describe(event), "nothing (the code already ended)"
            )
        if isinstance(event, ACTION_EVENTS):
            if not self._pending:
                raise NondeterminismError(
                    self.instance_id, position, describe(event), "no further durable call"
                )
            action = self._pending.popleft()
            if not matches(event, action):
                raise NondeterminismError(
                    self.instance_id, position, describe(event), describe(action)
                )
            self.history.append(event)
            self._after_action_matched(event)
            return
        if self._pending:
            raise NondeterminismError(
                self.instance_id, position, describe(event), describe(self._pending[0])
            )
        self.history.append(event)
        self.current_ts = event.ts
        self._dispatch(event)

    def _after_action_matched(self, event: HistoryEvent) -> None:
        """Keep engine state in step with recorded actions (timers keep recorded fire times)."""
        if isinstance(event, TimerCreated):
            future = self._futures.get(event.seq)
            if isinstance(future, TimerFuture):
                future.fire_at = event.fire_at

    def end_replay(self, now_ms: int) -> None:
        """History is exhausted: from here on everything is new and gets recorded."""
        self.replaying = False
        self._now_ms = now_ms
        self._turn = self._new_changes()
        self._turn_first_seq = self._next_seq
        self._flush()

    # -- new work ------------------------------------------------------------------------------

    def abort_replay(self, history: list[HistoryEvent], error: ErrorInfo, now_ms: int) -> None:
        """Replay failed: end the execution with ``error`` after the full stored history."""
        self.history = list(history)
        self._pending.clear()
        self.outcome = None
        self._fail(error)
        self.begin_turn(now_ms)

    def begin_turn(self, now_ms: int) -> None:
        """Start a new turn on an execution that is already caught up (cached)."""
        self.replaying = False
        self._now_ms = now_ms
        self._turn = self._new_changes()
        self._turn_first_seq = self._next_seq

    def start(self, started: OrchestrationStarted) -> None:
        """Record and run the first event of a brand-new execution."""
        self._dispatch(self._record(started))
        self._flush()

    def apply_message(self, message: AnyOrchestratorMessage) -> None:
        """Turn one queue message into a recorded event and run the code it unblocks."""
        if self.outcome is not None:
            self._unprocessed.append(message)
            return
        event = self._event_for(message)
        if event is None:
            return
        self._dispatch(self._record(event))
        self._flush()

    def _event_for(self, message: AnyOrchestratorMessage) -> HistoryEvent | None:
        """The event a message becomes, or None if it is stale, duplicate or unknown."""
        if isinstance(
            message, ActivityResultMessage | TimerFiredMessage | SubOrchestrationResultMessage
        ):
            if message.execution_id != self.execution_id:
                return None
            future = self._futures.get(message.seq)
            if future is None or future.done:
                return None
            if isinstance(message, ActivityResultMessage) and isinstance(future, ActivityFuture):
                if message.error is not None:
                    return ActivityFailed(event_id=0, ts=0, seq=message.seq, error=message.error)
                return ActivityCompleted(event_id=0, ts=0, seq=message.seq, result=message.result)
            if isinstance(message, TimerFiredMessage) and isinstance(future, TimerFuture):
                return TimerFired(event_id=0, ts=0, seq=message.seq)
            if isinstance(message, SubOrchestrationResultMessage) and isinstance(
                future, SubOrchestrationFuture
            ):
                if message.error is not None:
                    return SubOrchestrationFailed(
                        event_id=0, ts=0, seq=message.seq, error=message.error
                    )
                return SubOrchestrationCompleted(
                    event_id=0, ts=0, seq=message.seq, result=message.result
                )
            return None
        if isinstance(message, RaiseEventMessage):
            return EventRaised(event_id=0, ts=0, name=message.name, data=message.data)
        if isinstance(message, EnqueueEventMessage):
            return EventQueued(event_id=0, ts=0, queue=message.queue, data=message.data)
        if isinstance(message, CancelOrchestrationMessage):
            return CancelRequested(event_id=0, ts=0, reason=message.reason)
        return None  # duplicate starts are handled by the shell

    def _record(self, event: HistoryEvent) -> HistoryEvent:
        recorded = msgspec.structs.replace(event, event_id=len(self.history) + 1, ts=self._now_ms)
        self.history.append(recorded)
        self._turn.new_events.append(recorded)
        if not isinstance(recorded, ACTION_EVENTS):
            self.current_ts = recorded.ts
        return recorded

    def _flush(self) -> None:
        """Record the actions the last run emitted, with their side effects."""
        while self._pending:
            action = self._record(self._pending.popleft())
            self._side_effects(action)

    def _side_effects(self, action: HistoryEvent) -> None:
        target = self._futures.get(action.target) if isinstance(action, TaskCancelled) else None
        record_side_effects(self._turn, action, self, target)

    # -- applying events -----------------------------------------------------------------------

    def _dispatch(self, event: HistoryEvent) -> None:
        self._position = event.event_id
        if isinstance(event, OrchestrationStarted):
            self._start_root(event)
        elif isinstance(event, ActivityCompleted | SubOrchestrationCompleted):
            future = self._futures.get(event.seq)
            if isinstance(future, ActivityFuture | SubOrchestrationFuture) and not future.done:
                what = f"result of {future.name!r}"
                try:
                    future.set_result(decode(event.result, future.output_type, what=what))
                except PayloadError as exc:
                    future.set_exception(exc)
        elif isinstance(event, ActivityFailed):
            future = self._futures.get(event.seq)
            if isinstance(future, ActivityFuture):
                attempts = self._attempt_of(event.seq)
                future.set_exception(
                    ActivityFailedError(future.name, event.error, attempts=attempts)
                )
        elif isinstance(event, SubOrchestrationFailed):
            future = self._futures.get(event.seq)
            if isinstance(future, SubOrchestrationFuture):
                future.set_exception(
                    SubOrchestrationFailedError(future.name, future.instance_id, event.error)
                )
        elif isinstance(event, TimerFired):
            future = self._futures.get(event.seq)
            if future is not None:
                future.set_result(None)
        elif isinstance(event, EventRaised):
            self._deliver(("event", event.name), event.event_id, event.data)
        elif isinstance(event, EventQueued):
            self._deliver(("queue", event.queue), event.event_id, event.data)
        elif isinstance(event, CancelRequested):
            self._cancel_instance(event.reason)
        self._run_ready()

    def _attempt_of(self, seq: int) -> int:
        for event in reversed(self.history):
            if isinstance(event, ActivityScheduled) and event.seq == seq:
                return event.attempt
        return 1

    def _start_root(self, started: OrchestrationStarted) -> None:
        self.parent = started.parent
        for carried in started.carried_events:
            self._buffers.setdefault((carried.kind, carried.queue), deque()).append(
                (started.event_id, carried.data)
            )
        fn = self.orchestration.fn
        try:
            args: tuple[Any, ...] = (self.ctx,)
            if self.orchestration.takes_input:
                args += (
                    decode(
                        started.input,
                        self.orchestration.input_type,
                        what=f"input of orchestration {self.orchestration.name!r}",
                    ),
                )
            coro = fn(*args)
        except PayloadError as exc:
            self._fail(application_error(exc, retryable=False))
            return
        except Exception as exc:
            self._fail(application_error(exc))
            return
        root = self.spawn(coro, name="root")
        root.add_done_callback(self._root_done)

    def _deliver(self, channel: tuple[str, str], position: int, data: msgspec.Raw) -> None:
        waiters = self._waiters.get(channel)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done:
                self._resolve_wait(waiter, position, data)
                return
        self._buffers.setdefault(channel, deque()).append((position, data))

    def _resolve_wait(self, waiter: EventFuture, position: int, data: msgspec.Raw) -> None:
        waiter.taken = (position, data)
        what = f"{waiter.channel[0]} {waiter.channel[1]!r}"
        try:
            waiter.set_result(decode(data, waiter.output_type, what=what), position=position)
        except PayloadError as exc:
            waiter.set_exception(exc, position=position)

    def wait_on(self, channel: tuple[str, str], output_type: Any) -> EventFuture:
        """A future for the next unconsumed arrival on ``channel`` (FIFO)."""
        future = EventFuture(self, channel, output_type)
        buffered = self._buffers.get(channel)
        if buffered:
            position, data = buffered.popleft()
            self._resolve_wait(future, position, data)
        else:
            self._waiters.setdefault(channel, deque()).append(future)
        return future

    def return_arrival(self, future: EventFuture) -> None:
        """Un-consume the arrival a losing wait took from the buffer, keeping arrival order."""
        if future.taken is None:
            return
        buffered = self._buffers.setdefault(future.channel, deque())
        buffered.append(future.taken)
        self._buffers[future.channel] = deque(sorted(buffered, key=lambda item: item[0]))
        future.taken = None

    def _cancel_instance(self, reason: str) -> None:
        self._fail(cancelled_error(reason))

    # -- finishing a turn ----------------------------------------------------------------------

    def finish_turn(self) -> TurnChanges:
        """Close the turn: record the terminal event and clean up if the execution ended."""
        turn = self._turn
        turn.parent_instance_id = self.parent.instance_id if self.parent else None
        if self.outcome is None:
            return turn
        self._record(self.outcome)
        self._close_tasks()
        # Work scheduled by this very turn is never dispatched; earlier work is withdrawn.
        turn.activity_tasks.clear()
        turn.orchestrator_messages = [
            scheduled
            for scheduled in turn.orchestrator_messages
            if not isinstance(scheduled.message, TimerFiredMessage)
            and not (
                isinstance(scheduled.message, StartOrchestrationMessage)
                and scheduled.message.parent is not None
            )
        ]
        for seq, future in self._futures.items():
            if future.done:
                continue
            if isinstance(future, ActivityFuture) and seq < self._turn_first_seq:
                turn.cancelled_activities.append(seq)
            elif isinstance(future, SubOrchestrationFuture) and seq < self._turn_first_seq:
                turn.orchestrator_messages.append(
                    ScheduledMessage(
                        message=CancelOrchestrationMessage(
                            instance_id=future.instance_id,
                            reason=f"parent {self.instance_id!r} ended",
                        )
                    )
                )
        outcome = self.outcome
        if isinstance(outcome, OrchestrationCompleted):
            turn.execution_status = ExecutionStatus.COMPLETED
            turn.output = bytes(outcome.output)
        elif isinstance(outcome, OrchestrationFailed):
            turn.execution_status = ExecutionStatus.FAILED
            turn.error = outcome.error
        else:
            turn.execution_status = ExecutionStatus.CONTINUED_AS_NEW
            turn.orchestrator_messages.append(
                ScheduledMessage(message=self._continue_message(outcome))
            )
            # A cancellation this execution never saw applies to the next one.
            turn.orchestrator_messages.extend(
                ScheduledMessage(message=m)
                for m in self._unprocessed
                if isinstance(m, CancelOrchestrationMessage)
            )
            return turn
        if self.parent is not None:
            turn.orchestrator_messages.append(
                ScheduledMessage(
                    message=SubOrchestrationResultMessage(
                        instance_id=self.parent.instance_id,
                        execution_id=self.parent.execution_id,
                        seq=self.parent.seq,
                        child_instance_id=self.instance_id,
                        result=outcome.output
                        if isinstance(outcome, OrchestrationCompleted)
                        else NULL,
                        error=outcome.error if isinstance(outcome, OrchestrationFailed) else None,
                    )
                )
            )
        return turn

    def _continue_message(self, outcome: ContinuedAsNew) -> ContinueAsNewMessage:
        carried = [
            CarriedEvent(queue=channel[1], data=data)
            for channel, buffered in self._buffers.items()
            if channel[0] == "queue"
            for _position, data in buffered
        ]
        # Arrivals this execution never processed go first in line for the next one, ahead of
        # anything enqueued later (re-sending them would put them behind newer messages).
        for message in self._unprocessed:
            if isinstance(message, EnqueueEventMessage):
                carried.append(CarriedEvent(queue=message.queue, data=message.data))
            elif isinstance(message, RaiseEventMessage):
                carried.append(CarriedEvent(queue=message.name, data=message.data, kind="event"))
        return ContinueAsNewMessage(
            instance_id=self.instance_id,
            execution_id=self.execution_id + 1,
            name=self.orchestration.name,
            version=outcome.version,
            input=outcome.input,
            carried_events=carried,
            parent=self.parent,
        )

    def _close_tasks(self) -> None:
        self._ready.clear()
        self.discard()

    def discard(self) -> None:
        """Close every suspended coroutine now, deterministically, rather than whenever the
        garbage collector gets to them. Their ``finally`` blocks run but can record nothing."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task.future.done:  # finished, failed or already closed
                continue
            task.closing = True
            previous, self.current_task = self.current_task, task
            try:
                task.coro.close()
            except BaseException:  # user cleanup failing cannot change history
                pass
            finally:
                self.current_task = previous
