"""The scheduler: runs orchestration code as tasks, one step at a time, in an order history fixes.

Code runs only when a future resolves, and futures resolve only while the engine processes a
history event; the tasks they wake then run in FIFO order. So the order of everything the code
does is a function of history.
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine
from typing import Any

from .._errors import NondeterminismError, NonDurableAwaitError
from .._history import ContinuedAsNew
from ._futures import DurableFuture
from ._outcomes import ContinueAsNewSignal, Outcome, configuration_error


class Task:
    """Drives one coroutine; resumed by the scheduler when the future it awaits resolves."""

    __slots__ = ("closing", "coro", "future", "name", "owned")

    def __init__(self, coro: Coroutine[Any, Any, Any], future: TaskFuture, name: str) -> None:
        # The root orchestration call, or a branch (a coroutine passed to join/select, a retry).
        self.coro = coro
        # Resolves with what the coroutine returns or raises.
        self.future = future
        # "root", "branch" or "retry:<activity>": for people reading a debugger.
        self.name = name
        # Futures created while this task ran, in creation order; cancelled with the task.
        self.owned: list[DurableFuture[Any]] = []
        # Set once the task is cancelled or discarded: from then on it may record nothing.
        self.closing = False


class TaskFuture(DurableFuture[Any]):
    """The result of a branch: a coroutine run concurrently inside the orchestration."""

    __slots__ = ("_scheduler", "task")

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__(scheduler)
        self._scheduler = scheduler
        # Set right after construction (the task needs its future first); never replaced.
        self.task: Task | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            return
        if self.task is not None:
            self._scheduler.cancel_task(self.task, reason)
        super().cancel(reason)


class Scheduler:
    """The tasks of one execution, the queue of those ready to run, and the order of
    resolutions. Stops running code for good once ``outcome`` is set."""

    def __init__(self, outcome: Outcome, orchestration_name: str) -> None:
        # Read, and set when code ends the execution (continue_as_new, a non-durable await).
        self._outcome = outcome
        # Named in the error for a non-durable await.
        self._orchestration_name = orchestration_name
        # Every task spawned and not yet discarded, finished or not, in spawn order.
        self._tasks: list[Task] = []
        # Tasks whose awaited future resolved, to run in the order they were woken (a list
        # taken whole by run_ready: an empty deque would cost 600 bytes per cached execution).
        self._ready: list[Task] = []
        # The task whose coroutine is running right now, or None between steps.
        self._current: Task | None = None
        # event_id of the history event being processed: where its resolutions sort.
        self._position = 0
        # Resolutions so far: orders the resolutions caused by one history event.
        self._resolutions = 0

    # -- what futures and the recorder ask -----------------------------------------------------

    def advance_to(self, position: int) -> None:
        """The history event at ``position`` is being processed."""
        self._position = position

    def next_resolution_order(self, position: int | None = None) -> tuple[int, int]:
        """Sort key of a resolution: the history position that caused it, then a counter."""
        self._resolutions += 1
        return (self._position if position is None else position, self._resolutions)

    def adopt(self, future: DurableFuture[Any]) -> None:
        if self._current is not None:
            self._current.owned.append(future)

    @property
    def in_closing_task(self) -> bool:
        """True while a cancelled or discarded task runs its cleanup (it may record nothing)."""
        return self._current is not None and self._current.closing

    # -- running tasks -------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "branch") -> TaskFuture:
        """Start ``coro`` as a task; it runs eagerly until its first durable await."""
        future = TaskFuture(self)
        task = Task(coro, future, name)
        future.task = task
        self._tasks.append(task)
        self._step(task)
        return future

    def run_ready(self) -> None:
        """Run woken tasks until none is left, or until the execution has ended."""
        while self._ready and self._outcome.event is None:
            woken, self._ready = self._ready, []
            for n, task in enumerate(woken):
                if self._outcome.event is not None:
                    self._ready[:0] = woken[n:]
                    return
                self._step(task)

    def cancel_task(self, task: Task, reason: str) -> None:
        if task.future.done or task.closing:
            return
        task.closing = True
        self._close(task)
        for owned in list(task.owned):
            owned.cancel(reason)

    def discard(self) -> None:
        """Close every suspended coroutine now, deterministically, rather than whenever the
        garbage collector gets to them. Their ``finally`` blocks run but can record nothing."""
        self._ready.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task.future.done:  # finished, failed or already closed
                continue
            task.closing = True
            self._close(task)
        # Tasks, futures and their callbacks refer to each other; untied, the execution is
        # freed by reference counting instead of waiting for a full garbage collection (an
        # evicted execution is usually old enough to sit in the oldest generation).
        for task in tasks:
            for future in task.owned:
                future._forget_callbacks()
            task.owned.clear()
            task.future._forget_callbacks()
            task.future.task = None

    def _close(self, task: Task) -> None:
        previous, self._current = self._current, task
        try:
            task.coro.close()
        except BaseException:  # user cleanup failing cannot change history
            pass
        finally:
            self._current = previous

    def _step(self, task: Task) -> None:
        if task.future.done or self._outcome.event is not None:
            return
        previous, self._current = self._current, task
        try:
            yielded = task.coro.send(None)
        except StopIteration as stop:
            task.future.set_result(stop.value)
        except ContinueAsNewSignal as signal:
            self._outcome.end(
                ContinuedAsNew(event_id=0, ts=0, input=signal.input, version=signal.version)
            )
        except NondeterminismError as exc:
            self._outcome.fail(configuration_error(exc))
        except BaseException as exc:  # user code raised: the task (or the root) failed
            # KeyboardInterrupt and SystemExit too: user code's, they fail the instance, not
            # the host process.
            task.future.set_exception(exc)
        else:
            if isinstance(yielded, DurableFuture):
                yielded.add_done_callback(functools.partial(self._wake, task))
            else:
                self._reject_foreign_await(task, yielded)
        finally:
            self._current = previous

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
            f"orchestration {self._orchestration_name!r} awaited {what}, which is not durable. "
            "Orchestrations may only await ctx.* calls (use ctx.schedule_timer instead of "
            "sleeping, and activities for I/O)."
        )
        self._outcome.fail(configuration_error(error))
        try:
            task.coro.close()
        except BaseException:
            pass
