"""The recorder: an execution's history, and the actions code asks for, matched or recorded.

Every durable call *emits* an action (a history event template). While replaying, each
recorded action event must match the next pending action, and a completion or arrival may only
be processed once every earlier action was matched. New actions are recorded right after the
run that emitted them, so history interleaves exactly as the code ran.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import msgspec

from .._errors import NondeterminismError, TaskCancelledError
from .._history import ACTION_EVENTS, ExecutionRewound, HistoryEvent, OrchestrationStarted
from .._messages import AnyOrchestratorMessage
from .._records import TurnChanges
from ._identity import Identity
from ._matching import describe, matches
from ._outcomes import cancelled_error
from ._scheduler import Scheduler


class Recorder:
    """History so far, pending actions, and the turn being built from what gets recorded."""

    def __init__(self, identity: Identity, scheduler: Scheduler) -> None:
        # Stamps each turn's changes; names the instance in nondeterminism errors.
        self._identity = identity
        # Asked whether the running task is closing: a closing task may record nothing.
        self._scheduler = scheduler
        # Every event of the execution, replayed or recorded; event_id == index + 1.
        self._history: list[HistoryEvent] = []
        # True until recorded history is exhausted; from then on everything is recorded.
        self._replaying = True
        # ts of the latest completion or arrival processed: the time code sees.
        self._now_ms = 0
        # This turn's wall-clock time: the ts of the events it records.
        self._turn_now_ms = 0
        # Emitted actions not yet matched (replay) or recorded (new), in seq order.
        self._pending: deque[HistoryEvent] = deque()
        # seq of the next action; seqs are never reused within an execution.
        self._next_seq = 1
        # The changes this turn has made so far.
        self._turn = identity.new_changes()
        # seq of this turn's first action: lower seqs belong to work of earlier turns.
        self._turn_first_seq = 1
        # Messages that arrived after the execution ended, in arrival order.
        self._unprocessed: list[AnyOrchestratorMessage] = []

    @property
    def history(self) -> list[HistoryEvent]:
        return self._history

    @property
    def started(self) -> OrchestrationStarted | None:
        """The execution's first event, once it is in history."""
        first = self._history[0] if self._history else None
        return first if isinstance(first, OrchestrationStarted) else None

    @property
    def replaying(self) -> bool:
        return self._replaying

    @property
    def now_ms(self) -> int:
        return self._now_ms

    @property
    def turn(self) -> TurnChanges:
        return self._turn

    @property
    def turn_first_seq(self) -> int:
        return self._turn_first_seq

    @property
    def unprocessed(self) -> list[AnyOrchestratorMessage]:
        return self._unprocessed

    # -- actions -------------------------------------------------------------------------------

    def emit(self, action: HistoryEvent) -> int:
        """Queue an action; returns its seq. The event id and time are filled when recorded."""
        if self._scheduler.in_closing_task:
            raise TaskCancelledError(
                "a cancelled branch cannot schedule durable work",
                error=cancelled_error("cancelled branch", "TaskCancelledError"),
            )
        seq = self._next_seq
        self._next_seq += 1
        self._pending.append(msgspec.structs.replace(action, seq=seq))
        return seq

    def peek_seq(self) -> int:
        """The seq the next action will get."""
        return self._next_seq

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    # -- replay --------------------------------------------------------------------------------

    def replay_action(self, event: HistoryEvent) -> None:
        """Match a recorded action against the code's next one. Raises on divergence."""
        if not self._pending:
            raise self.divergence(event, "no further durable call")
        action = self._pending.popleft()
        if not matches(event, action):
            raise self.divergence(event, describe(action))
        self._history.append(event)

    def replay_arrival(self, event: HistoryEvent) -> None:
        """Take a recorded completion or arrival: only once the code matched every action."""
        if self._pending:
            raise self.divergence(event, describe(self._pending[0]))
        self._history.append(event)
        self._now_ms = event.ts

    def skip(self, event: HistoryEvent) -> None:
        """Keep a recorded event without replaying it: one a rewind undid, or the
        ``ExecutionRewound`` marker itself (its time is the time code sees next, as when it was
        recorded)."""
        self._history.append(event)
        if isinstance(event, ExecutionRewound):
            self._now_ms = event.ts

    def divergence(self, event: HistoryEvent, requested: str) -> NondeterminismError:
        return NondeterminismError(
            self._identity.instance_id, event.event_id, describe(event), requested
        )

    def abort(self, history: list[HistoryEvent]) -> None:
        """Replay diverged: take the full stored history as it is and drop pending actions."""
        self._history = list(history)
        self._pending.clear()

    # -- recording -----------------------------------------------------------------------------

    def begin_turn(self, now_ms: int) -> None:
        """Replay is over (or was never needed): start a turn recorded at ``now_ms``."""
        self._replaying = False
        self._turn_now_ms = now_ms
        self._turn = self._identity.new_changes()
        self._turn_first_seq = self._next_seq

    def record(self, event: HistoryEvent) -> HistoryEvent:
        """Append ``event`` to history and to the turn, with its event id and the turn's time."""
        recorded = msgspec.structs.replace(
            event, event_id=len(self._history) + 1, ts=self._turn_now_ms
        )
        self._history.append(recorded)
        self._turn.new_events.append(recorded)
        if not isinstance(recorded, ACTION_EVENTS):
            self._now_ms = recorded.ts
        return recorded

    def record_pending(self) -> Iterator[HistoryEvent]:
        """Record the actions the last run emitted, yielding each as recorded."""
        while self._pending:
            yield self.record(self._pending.popleft())

    def hold(self, message: AnyOrchestratorMessage) -> None:
        """Keep a message that arrived after the end (continue_as_new passes some on)."""
        self._unprocessed.append(message)
