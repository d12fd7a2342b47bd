"""Typed durable futures for each kind of step, and the coroutine task that drives code."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from .._history import TaskCancelled
from ._futures import DurableFuture

if TYPE_CHECKING:
    from ._execution import Execution


class StepFuture(DurableFuture[Any]):
    """An activity or sub-orchestration: durable work that cancelling must withdraw."""

    __slots__ = ("name", "output_type", "seq")

    def __init__(self, execution: Execution, seq: int, name: str, output_type: Any) -> None:
        super().__init__(execution)
        self.seq = seq
        self.name = name
        self.output_type = output_type

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            return
        # Recorded so replay reproduces it; the commit withdraws the activity's work item or
        # cancels the child instance.
        self.execution.emit(TaskCancelled(event_id=0, ts=0, seq=0, target=self.seq))
        super().cancel(reason)


class ActivityFuture(StepFuture):
    __slots__ = ()


class SubOrchestrationFuture(StepFuture):
    __slots__ = ("instance_id",)

    def __init__(
        self, execution: Execution, seq: int, name: str, instance_id: str, output_type: Any
    ) -> None:
        super().__init__(execution, seq, name, output_type)
        self.instance_id = instance_id


class TimerFuture(DurableFuture[None]):
    """Dropping a timer costs nothing: its late firing is simply ignored."""

    __slots__ = ("fire_at", "seq")

    def __init__(self, execution: Execution, seq: int, fire_at: int) -> None:
        super().__init__(execution)
        self.seq = seq
        self.fire_at = fire_at


class EventFuture(DurableFuture[Any]):
    """A wait for an external event or a mailbox message; cancelled waits consume nothing."""

    __slots__ = ("channel", "output_type", "taken")

    def __init__(self, execution: Execution, channel: tuple[str, str], output_type: Any) -> None:
        super().__init__(execution)
        self.channel = channel
        self.output_type = output_type
        self.taken: tuple[int, msgspec.Raw] | None = None
        """(position, data) of the arrival this wait consumed."""

    def result(self) -> Any:
        self.taken = None  # observed: the arrival is consumed for good
        return super().result()

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            # A wait served from the buffer that loses a select hands its arrival back.
            if not self.cancelled:
                self.cancelled = True
                self.execution.return_arrival(self)
            return
        super().cancel(reason)


class TaskFuture(DurableFuture[Any]):
    """The result of a branch: a coroutine run concurrently inside the orchestration."""

    __slots__ = ("task",)

    def __init__(self, execution: Execution) -> None:
        super().__init__(execution)
        self.task: Task | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            return
        if self.task is not None:
            self.execution.cancel_task(self.task, reason)
        super().cancel(reason)


class Task:
    """Drives one coroutine; resumed by the engine when the future it awaits resolves."""

    __slots__ = ("closing", "coro", "future", "name", "owned")

    def __init__(self, coro: Coroutine[Any, Any, Any], future: TaskFuture, name: str) -> None:
        self.coro = coro
        self.future = future
        self.name = name
        self.owned: list[DurableFuture[Any]] = []
        self.closing = False
