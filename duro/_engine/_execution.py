"""The replay engine: one live execution of an orchestration, driven by history.

Pure: no I/O, no clock, no anyio. The shell feeds it recorded history (``replay_event``),
then new messages (``apply_message``) and collects the turn (``finish_turn``). The instance
stays alive between turns, so a cached ``Execution`` only ever processes new messages.

``Execution`` turns history events and messages into calls on the collaborators that own the
state: the scheduler runs the code (``_scheduler``), the recorder matches and records what it
asks for (``_recorder``), steps and arrivals resolve the futures it awaits (``_steps``,
``_arrivals``), the durable state holds KV and custom status (``_state``), and the outcome its
ending (``_outcomes``). How determinism is kept is explained in the first two. What messages
become (``_inbox``), what recorded actions send out (``_effects``) and what an ending sends out
(``_ending``) are decided in modules of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ContinuedAsNew,
    EventQueued,
    EventRaised,
    ExecutionRewound,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    ParentRef,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
    TimerFired,
    undone_event_ids,
)
from .._messages import (
    AnyOrchestratorMessage,
    RewindOrchestrationMessage,
    ScheduledMessage,
)
from .._records import KvChange, KvEntry, TurnChanges
from .._registry import Registered, Registry
from .._serde import decode, encode
from .._status import ErrorInfo
from ._arrivals import Arrivals
from ._attempts import AttemptOutcome, Attempts
from ._context import OrchestrationContext
from ._effects import SideEffects
from ._ending import continue_as_new, report_result, withdraw_work
from ._futures import DurableFuture
from ._identity import Identity
from ._inbox import Inbox
from ._outcomes import (
    DEFAULT_MAX_HISTORY_EVENTS,
    Outcome,
    application_error,
    cancelled_error,
    configuration_error,
    history_limit_error,
)
from ._recorder import Recorder
from ._scheduler import Scheduler
from ._state import DurableState
from ._steps import ActivityFuture, Steps, SubOrchestrationFuture

ALREADY_ENDED = "nothing (the code already ended)"
"""What a nondeterminism error says the code requests when history goes on after its end."""


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
        max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS,
    ) -> None:
        # The code that runs; its name and version are recorded and stamped on every turn.
        self.orchestration = orchestration
        self._max_history_events = max_history_events
        self._identity = Identity(
            instance_id=instance_id,
            execution_id=execution_id,
            name=orchestration.name,
            version=orchestration.version,
        )
        # The collaborators own the state; Execution only routes events and messages to them.
        # Set once the code ends; from then on no code runs and new messages are held.
        self._outcome = Outcome()
        # Runs the code's tasks in an order history fixes.
        self._scheduler = Scheduler(self._outcome, orchestration.name)
        # Matches the code's durable calls against history, or records them.
        self._recorder = Recorder(self._identity, self._scheduler)
        # Futures of activities, sub-orchestrations and timers, by seq.
        self._steps = Steps(self._scheduler, self._recorder)
        # External events and mailbox messages, and the waits for them.
        self._arrivals = Arrivals(self._scheduler)
        # KV, custom status and GUID counter as the code sees them.
        self._state = DurableState(kv_snapshot)
        # What a newly recorded action sends out (stateless).
        self._effects = SideEffects(self._identity, self._steps)
        # What a new message becomes in history (stateless).
        self._inbox = Inbox(self._identity, self._steps)
        # How this turn's activity attempts ended (telemetry for the shell).
        self.attempts = Attempts()
        self.ctx = OrchestrationContext(
            identity=self._identity,
            registry=registry,
            recorder=self._recorder,
            scheduler=self._scheduler,
            steps=self._steps,
            arrivals=self._arrivals,
            state=self._state,
            attempts=self.attempts,
        )

    @property
    def instance_id(self) -> str:
        return self._identity.instance_id

    @property
    def execution_id(self) -> int:
        return self._identity.execution_id

    @property
    def history(self) -> list[HistoryEvent]:
        """Every event so far: replayed, then recorded."""
        return self._recorder.history

    @property
    def replaying(self) -> bool:
        return self._recorder.replaying

    @property
    def parent(self) -> ParentRef | None:
        """Where a sub-orchestration reports its result (known once it has started)."""
        started = self._recorder.started
        return started.parent if started else None

    @property
    def notify(self) -> str | None:
        """The instance this one reports its end to (a schedule's run), if any."""
        started = self._recorder.started
        return started.notify if started else None

    @property
    def outcome(self) -> OrchestrationCompleted | OrchestrationFailed | ContinuedAsNew | None:
        """The terminal event once the code ended (recorded when the turn finishes)."""
        return self._outcome.event

    @property
    def is_terminal(self) -> bool:
        return self._outcome.event is not None

    def expects_completion_by(self, deadline_ms: int) -> bool:
        """Whether work of its own may wake it by ``deadline_ms`` (an activity or
        sub-orchestration in flight, a timer due); if not, only an event or message can."""
        return self._steps.completion_due_by(deadline_ms)

    def pending_changes(self) -> TurnChanges:
        """The turn being built (the shell adds replies that are not the code's doing)."""
        return self._recorder.turn

    # -- replay --------------------------------------------------------------------------------

    def replay_event(self, event: HistoryEvent) -> None:
        """Feed one recorded event. Raises ``NondeterminismError`` on divergence."""
        recorder = self._recorder
        if self._outcome.event is not None and not recorder.has_pending:
            raise recorder.divergence(event, ALREADY_ENDED)
        if isinstance(event, ACTION_EVENTS):
            recorder.replay_action(event)
            return
        recorder.replay_arrival(event)
        self._dispatch(event)

    def replay_history(
        self, history: list[HistoryEvent], also_undone: frozenset[int] = frozenset()
    ) -> None:
        """Feed recorded events, skipping what a rewind undid (and ``also_undone``).
        Raises ``NondeterminismError`` on divergence."""
        skipped = undone_event_ids(history) | also_undone
        for event in history:
            if event.event_id in skipped or isinstance(event, ExecutionRewound):
                self._recorder.skip(event)
            else:
                self.replay_event(event)

    def reopen(self, marker: ExecutionRewound) -> None:
        """Record a rewind after replaying what it keeps, and send again the work of every
        step still open there: activities (same seq and attempt) and timers (due when they
        were), and a rewind to each open sub-orchestration, which runs a failed child again
        or has a finished one report again. The store's KV delta and custom status become the
        replayed ones: what the undone part wrote is gone (the failed execution's KV writes
        were never merged, so the snapshot this replay started from is the execution's own)."""
        self._recorder.record(marker)
        turn = self._recorder.turn
        turn.custom_status_changed = True
        turn.custom_status = self._state.custom_status
        turn.kv_clear_all = True
        turn.kv_changes = {
            key: KvChange(key=key, value=entry.value, updated_at_ms=entry.updated_at_ms)
            for key, entry in self._state.kv.items()
        }
        scheduling = {
            event.seq: event
            for event in self._recorder.history
            if isinstance(event, ActivityScheduled | TimerCreated | SubOrchestrationScheduled)
        }
        for step in self._steps.pending():
            event = scheduling.get(step.seq)
            if isinstance(event, ActivityScheduled | TimerCreated):
                self._effects.record(turn, event)
            elif isinstance(event, SubOrchestrationScheduled):
                turn.orchestrator_messages.append(
                    ScheduledMessage(
                        message=RewindOrchestrationMessage(
                            instance_id=event.instance_id,
                            reason=f"parent {self.instance_id!r} was rewound",
                        )
                    )
                )

    def end_replay(self, now_ms: int) -> None:
        """History is exhausted: from here on everything is new and gets recorded."""
        self._recorder.begin_turn(now_ms)
        self._flush()

    def abort_replay(self, history: list[HistoryEvent], error: ErrorInfo, now_ms: int) -> None:
        """Replay failed: end the execution with ``error`` after the full stored history."""
        self._recorder.abort(history)
        self._outcome.overrule(error)
        self._recorder.begin_turn(now_ms)

    # -- new work ------------------------------------------------------------------------------

    def begin_turn(self, now_ms: int) -> None:
        """Start a new turn on an execution that is already caught up (cached)."""
        self._recorder.begin_turn(now_ms)

    def start(self, started: OrchestrationStarted) -> None:
        """Record and run the first event of a brand-new execution."""
        self._dispatch(self._recorder.record(started))
        self._flush()

    def apply_message(self, message: AnyOrchestratorMessage) -> None:
        """Turn one queue message into a recorded event and run the code it unblocks."""
        if self._outcome.event is not None:
            self._recorder.hold(message)
            return
        event = self._inbox.event_for(message)
        if event is None:
            return
        if isinstance(event, ActivityCompleted | ActivityFailed):
            self._attempt_ended(
                event.seq,
                AttemptOutcome.COMPLETED
                if isinstance(event, ActivityCompleted)
                else AttemptOutcome.FAILED,
            )
        self._dispatch(self._recorder.record(event))
        self._flush()

    def _flush(self) -> None:
        """Record the actions the last run emitted, with their side effects."""
        turn = self._recorder.turn
        for action in self._recorder.record_pending():
            self._effects.record(turn, action)
            if isinstance(action, TaskCancelled):
                self._attempt_ended(action.target, AttemptOutcome.CANCELLED)

    def _attempt_ended(self, seq: int, outcome: AttemptOutcome) -> None:
        future = self._steps.get(seq)
        if isinstance(future, ActivityFuture):
            self.attempts.ended(seq, future.name, outcome)

    # -- applying events -----------------------------------------------------------------------

    def _dispatch(self, event: HistoryEvent) -> None:
        """Apply one event (replayed or just recorded), then run the code it woke."""
        self._scheduler.advance_to(event.event_id)
        apply = _APPLY.get(type(event))
        if apply is not None:
            apply(self, event)
        self._scheduler.run_ready()

    def _apply_started(self, started: OrchestrationStarted) -> None:
        self._effects.traceparent = started.traceparent
        carried_status = bytes(started.custom_status)
        if carried_status != b"null":
            self._state.set_custom_status(carried_status)
        self._arrivals.carry_in(started.carried_events, started.event_id)
        orchestration = self.orchestration
        try:
            args: tuple[Any, ...] = (self.ctx,)
            if orchestration.takes_input:
                args += (
                    decode(
                        started.input,
                        orchestration.input_type,
                        what=f"input of orchestration {orchestration.name!r}",
                    ),
                )
            coro = orchestration.fn(*args)
        except PayloadError as exc:
            self._outcome.fail(application_error(exc, retryable=False))
            return
        except Exception as exc:
            self._outcome.fail(application_error(exc))
            return
        root = self._scheduler.spawn(coro, name="root")
        root.add_done_callback(self._root_done)

    def _root_done(self, future: DurableFuture[Any]) -> None:
        exc = future.exception()
        if exc is None:
            try:
                output = encode(future.result(), what="orchestration output")
            except PayloadError as payload_exc:
                self._outcome.fail(application_error(payload_exc, retryable=False))
                return
            self._outcome.end(OrchestrationCompleted(event_id=0, ts=0, output=output))
        elif isinstance(exc, NondeterminismError | NonDurableAwaitError | UnregisteredError):
            self._outcome.fail(configuration_error(exc))
        elif isinstance(exc, TaskCancelledError):
            self._outcome.fail(exc.error)
        else:
            self._outcome.fail(application_error(exc))

    def _apply_step_completed(self, event: ActivityCompleted | SubOrchestrationCompleted) -> None:
        future = self._steps.get(event.seq)
        if isinstance(future, ActivityFuture | SubOrchestrationFuture) and not future.done:
            what = f"result of {future.name!r}"
            try:
                future.set_result(decode(event.result, future.output_type, what=what))
            except PayloadError as exc:
                future.set_exception(exc)

    def _apply_activity_failed(self, event: ActivityFailed) -> None:
        future = self._steps.get(event.seq)
        if isinstance(future, ActivityFuture):
            attempts = self._attempt_of(event.seq)
            details = bytes(event.heartbeat_details)
            future.set_exception(
                ActivityFailedError(
                    future.name,
                    event.error,
                    attempts=attempts,
                    heartbeat_details=None if details == b"null" else details,
                )
            )

    def _attempt_of(self, seq: int) -> int:
        for event in reversed(self._recorder.history):
            if isinstance(event, ActivityScheduled) and event.seq == seq:
                return event.attempt
        return 1

    def _apply_sub_orchestration_failed(self, event: SubOrchestrationFailed) -> None:
        future = self._steps.get(event.seq)
        if isinstance(future, SubOrchestrationFuture):
            future.set_exception(
                SubOrchestrationFailedError(future.name, future.instance_id, event.error)
            )

    def _apply_timer_fired(self, event: TimerFired) -> None:
        future = self._steps.get(event.seq)
        if future is not None:
            future.set_result(None)

    def _apply_event_raised(self, event: EventRaised) -> None:
        self._arrivals.deliver(("event", event.name), event.event_id, event.data)

    def _apply_event_queued(self, event: EventQueued) -> None:
        self._arrivals.deliver(("queue", event.queue), event.event_id, event.data)

    def _apply_cancel_requested(self, event: CancelRequested) -> None:
        self._outcome.fail(cancelled_error(event.reason))

    # -- finishing a turn ----------------------------------------------------------------------

    def finish_turn(self) -> TurnChanges:
        """Close the turn: record the terminal event and clean up if the execution ended."""
        turn = self._recorder.turn
        parent = self.parent
        turn.parent_instance_id = parent.instance_id if parent else None
        events = len(self._recorder.history)
        if self._outcome.event is None and events > self._max_history_events:
            # Checked here, before anything is committed: the turn commits whole, ending the
            # execution, and the store never has to refuse a history that grew too long.
            self._outcome.fail(
                history_limit_error(
                    self.instance_id, self.execution_id, events, self._max_history_events
                )
            )
        ending = self._outcome.event
        if ending is None:
            return turn
        self._recorder.record(ending)
        self._scheduler.discard()
        pending = self._steps.pending()
        first_seq = self._recorder.turn_first_seq
        withdraw_work(turn, pending, first_seq, self.instance_id)
        for future in pending:
            if isinstance(future, ActivityFuture) and future.seq < first_seq:
                self.attempts.ended(future.seq, future.name, AttemptOutcome.CANCELLED)
        if isinstance(ending, ContinuedAsNew):
            queued = self._arrivals.queued()
            continue_as_new(
                turn,
                ending,
                self._identity,
                parent,
                queued,
                self._recorder.unprocessed,
                self._effects.traceparent,
                self._state.custom_status,
                self.notify,
            )
        else:
            report_result(turn, ending, parent, self.instance_id, self.notify)
        return turn

    def discard(self) -> None:
        """Close every suspended coroutine now, deterministically, rather than whenever the
        garbage collector gets to them. Their ``finally`` blocks run but can record nothing."""
        self._scheduler.discard()
        self._arrivals.discard()


# Keyed by exact type: history events are leaf Structs of a closed union. Not listed: actions
# (matched or recorded, never applied) and endings.
_APPLY: dict[type[HistoryEvent], Callable[[Execution, Any], None]] = {
    OrchestrationStarted: Execution._apply_started,
    ActivityCompleted: Execution._apply_step_completed,
    SubOrchestrationCompleted: Execution._apply_step_completed,
    ActivityFailed: Execution._apply_activity_failed,
    SubOrchestrationFailed: Execution._apply_sub_orchestration_failed,
    TimerFired: Execution._apply_timer_fired,
    EventRaised: Execution._apply_event_raised,
    EventQueued: Execution._apply_event_queued,
    CancelRequested: Execution._apply_cancel_requested,
}
