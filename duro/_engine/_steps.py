"""Durable steps: the futures of activities, sub-orchestrations and timers, indexed by seq.

A step is an action code scheduled (its seq is the action's) whose completion arrives later
as a message. Cancelling a step before it completes records the cancellation, so replay
reproduces it, and withdraws the work behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from .._history import TaskCancelled
from ._futures import DurableFuture, Scheduling

if TYPE_CHECKING:
    from ._recorder import Recorder


class StepFuture(DurableFuture[Any]):
    """An activity or sub-orchestration: durable work that cancelling must withdraw."""

    __slots__ = ("_recorder", "name", "output_type", "seq")

    def __init__(
        self, scheduling: Scheduling, recorder: Recorder, seq: int, name: str, output_type: Any
    ) -> None:
        super().__init__(scheduling)
        self._recorder = recorder
        self.seq = seq
        self.name = name
        self.output_type = output_type

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            return
        # Recorded so replay reproduces it; the commit withdraws the activity's work item or
        # cancels the child instance.
        self._recorder.emit(TaskCancelled(event_id=0, ts=0, seq=0, target=self.seq))
        super().cancel(reason)


class ActivityFuture(StepFuture):
    __slots__ = ()


class SubOrchestrationFuture(StepFuture):
    __slots__ = ("instance_id",)

    def __init__(
        self,
        scheduling: Scheduling,
        recorder: Recorder,
        seq: int,
        name: str,
        instance_id: str,
        output_type: Any,
    ) -> None:
        super().__init__(scheduling, recorder, seq, name, output_type)
        self.instance_id = instance_id


class TimerFuture(DurableFuture[None]):
    """Dropping a timer costs nothing: its late firing is simply ignored."""

    __slots__ = ("fire_at", "seq")

    def __init__(self, scheduling: Scheduling, seq: int, fire_at: int) -> None:
        super().__init__(scheduling)
        self.seq = seq
        self.fire_at = fire_at


Step = ActivityFuture | SubOrchestrationFuture | TimerFuture
_S = TypeVar("_S", ActivityFuture, SubOrchestrationFuture, TimerFuture)


class Steps:
    """Makes the futures of the steps code schedules and finds them again by seq."""

    def __init__(self, scheduling: Scheduling, recorder: Recorder) -> None:
        # Drives the step futures made here.
        self._scheduling = scheduling
        # Records the cancellation of a step dropped before it completed.
        self._recorder = recorder
        # Every step of the execution by seq, in seq order, done ones included.
        self._by_seq: dict[int, Step] = {}
        # The steps not done yet, by seq (a step leaves when it resolves).
        self._waiting: dict[int, Step] = {}

    def get(self, seq: int) -> Step | None:
        return self._by_seq.get(seq)

    def activity(self, seq: int, name: str, output_type: Any) -> ActivityFuture:
        return self._add(ActivityFuture(self._scheduling, self._recorder, seq, name, output_type))

    def sub_orchestration(
        self, seq: int, name: str, instance_id: str, output_type: Any
    ) -> SubOrchestrationFuture:
        return self._add(
            SubOrchestrationFuture(
                self._scheduling, self._recorder, seq, name, instance_id, output_type
            )
        )

    def timer(self, seq: int, fire_at: int) -> TimerFuture:
        return self._add(TimerFuture(self._scheduling, seq, fire_at))

    def pending(self) -> list[Step]:
        """Steps still waiting for their completion, in seq order."""
        return list(self._waiting.values())

    def completion_due_by(self, deadline_ms: int) -> bool:
        """Whether a completion may arrive by ``deadline_ms``: an activity or
        sub-orchestration is in flight, or a timer falls due by then."""
        for future in self._waiting.values():
            if not isinstance(future, TimerFuture) or future.fire_at <= deadline_ms:
                return True
        return False

    def _add(self, future: _S) -> _S:
        self._by_seq[future.seq] = future
        self._waiting[future.seq] = future
        future.add_done_callback(self._settled)
        return future

    def _settled(self, future: DurableFuture[Any]) -> None:
        assert isinstance(future, StepFuture | TimerFuture)
        del self._waiting[future.seq]
