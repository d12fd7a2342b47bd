"""Durable futures: what orchestration code awaits.

A future resolves only when the engine processes the matching history event, so resolution
order *is* history order. ``order`` records ``(history position, sequence)`` of the
resolution, which ``select`` uses to pick the first finisher among futures that were already
done when it was called (a wait served from the event buffer takes its arrival position).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from .._errors import TaskCancelledError
from ._outcomes import cancelled_error

T = TypeVar("T")

_PENDING = object()


class Scheduling(Protocol):
    """What a future needs from the scheduler that runs the code awaiting it."""

    def adopt(self, future: DurableFuture[Any]) -> None:
        """Tie a new future to the running task, so that cancelling the task cancels it."""

    def next_resolution_order(self, position: int | None = None) -> tuple[int, int]:
        """Sort key of a resolution: the history position that caused it, then a counter."""


class DurableFuture(Generic[T]):
    """The result of a durable step; ``await`` it inside an orchestration."""

    __slots__ = ("_callbacks", "_exception", "_result", "_scheduling", "cancelled", "order")

    def __init__(self, scheduling: Scheduling) -> None:
        # Orders this future's resolution among all others (and learns which task made it).
        self._scheduling = scheduling
        # The value, or _PENDING; set once, and never together with an exception.
        self._result: Any = _PENDING
        self._exception: BaseException | None = None
        # Run once, in the order added, when the future resolves (then emptied).
        self._callbacks: list[Callable[[DurableFuture[Any]], None]] = []
        # (history position, counter) of the resolution; (0, 0) while pending.
        self.order: tuple[int, int] = (0, 0)
        # Set once by cancel(): the work behind it is withdrawn or the arrival handed back.
        self.cancelled = False
        scheduling.adopt(self)

    @property
    def done(self) -> bool:
        """Whether the step has a result or an exception."""
        return self._result is not _PENDING or self._exception is not None

    def result(self) -> T:
        """The result; raises the step's exception, or ``RuntimeError`` while pending."""
        if self._exception is not None:
            raise self._exception
        if self._result is _PENDING:
            raise RuntimeError("durable future is not done")
        value: T = self._result
        return value

    def exception(self) -> BaseException | None:
        """The step's exception, or None (also while pending)."""
        return self._exception

    def add_done_callback(self, callback: Callable[[DurableFuture[Any]], None]) -> None:
        """Call ``callback(self)`` once it resolves (at once if it has). For the engine."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _forget_callbacks(self) -> None:
        """Drop the callbacks (the execution is being discarded: none may run)."""
        self._callbacks.clear()

    def set_result(self, value: Any, *, position: int | None = None) -> None:
        """Resolve with ``value`` (the engine does this, while processing history)."""
        if self.done:
            return
        self._result = value
        self._fire(position)

    def set_exception(self, exc: BaseException, *, position: int | None = None) -> None:
        """Resolve with ``exc`` (the engine does this, while processing history)."""
        if self.done:
            return
        self._exception = exc
        self._fire(position)

    def _fire(self, position: int | None) -> None:
        self.order = self._scheduling.next_resolution_order(position)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel if still pending: withdraw the durable work behind it (subclasses)."""
        if self.done:
            return
        self.cancelled = True
        self.set_exception(_cancelled(reason))

    def __await__(self) -> Generator[Any, None, T]:
        if not self.done:
            yield self
        return self.result()


def _cancelled(reason: str) -> TaskCancelledError:
    return TaskCancelledError(
        f"task cancelled: {reason}", error=cancelled_error(reason, "TaskCancelledError")
    )


class _Composite(DurableFuture[T]):
    """A future over child futures; cancelling it cancels the children still pending."""

    __slots__ = ("_children",)

    def __init__(self, scheduling: Scheduling, children: Sequence[DurableFuture[Any]]) -> None:
        super().__init__(scheduling)
        self._children = list(children)

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            return
        for child in self._children:
            child.cancel(reason)
        super().cancel(reason)


class JoinFuture(_Composite[list[Any]]):
    """Resolves when every child has; fails at the first failure in history order."""

    __slots__ = ("_remaining", "_return_exceptions")

    def __init__(
        self,
        scheduling: Scheduling,
        children: Sequence[DurableFuture[Any]],
        return_exceptions: bool,
    ) -> None:
        super().__init__(scheduling, children)
        self._return_exceptions = return_exceptions
        self._remaining = len(self._children)
        if not self._children:
            self.set_result([])
            return
        # Children already done resolve in the order they finished, not argument order.
        for child in sorted(self._children, key=lambda c: (not c.done, c.order)):
            child.add_done_callback(self._child_done)

    def _child_done(self, child: DurableFuture[Any]) -> None:
        if self.done:
            return
        exc = child.exception()
        if exc is not None and not self._return_exceptions:
            self.set_exception(exc)
            return
        self._remaining -= 1
        if self._remaining == 0:
            self.set_result(
                [c.exception() if c.exception() is not None else c.result() for c in self._children]
            )


class SelectFuture(_Composite[tuple[int, Any]]):
    """Resolves with ``(index, result)`` of the first child to finish in history order.

    The losers are cancelled. A failing winner raises its exception.
    """

    __slots__ = ()

    def __init__(self, scheduling: Scheduling, children: Sequence[DurableFuture[Any]]) -> None:
        super().__init__(scheduling, children)
        if not self._children:
            raise ValueError("select() needs at least one future")
        done = [c for c in self._children if c.done]
        if done:
            self._child_done(min(done, key=lambda c: c.order))
            return
        for child in self._children:
            child.add_done_callback(self._child_done)

    def _child_done(self, child: DurableFuture[Any]) -> None:
        if self.done:
            return
        index = next(i for i, c in enumerate(self._children) if c is child)
        exc = child.exception()
        # Resolve before cancelling the losers: their cancellation re-enters _child_done.
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result((index, child.result()))
        for other in self._children:
            if other is not child:
                other.cancel("lost a select")
