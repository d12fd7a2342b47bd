"""How an execution ends: its terminal event, the signal ``continue_as_new`` raises, and
failures as ``ErrorInfo``."""

from __future__ import annotations

import traceback

import msgspec

from .._errors import NondeterminismError
from .._history import ContinuedAsNew, OrchestrationCompleted, OrchestrationFailed
from .._status import ErrorCategory, ErrorInfo

Ending = OrchestrationCompleted | OrchestrationFailed | ContinuedAsNew


class Outcome:
    """The terminal event of an execution, once it has one. No code runs after it is set."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        # Set once: the first ending wins and later ones are ignored (only overrule replaces
        # it). Its event_id and ts are placeholders until the recorder records it.
        self.event: Ending | None = None

    def end(self, event: Ending) -> None:
        if self.event is None:
            self.event = event

    def fail(self, error: ErrorInfo) -> None:
        self.end(OrchestrationFailed(event_id=0, ts=0, error=error))

    def overrule(self, error: ErrorInfo) -> None:
        """Fail with ``error`` whatever the code did (replay diverged: its ending is void)."""
        self.event = None
        self.fail(error)


class ContinueAsNewSignal(BaseException):
    """Raised by ``ctx.continue_as_new``; a BaseException so ``except Exception`` ignores it."""

    def __init__(self, input: msgspec.Raw, version: str | None) -> None:
        super().__init__("continue_as_new")
        self.input = input
        self.version = version


def application_error(exc: BaseException, *, retryable: bool = True) -> ErrorInfo:
    return ErrorInfo(
        category=ErrorCategory.APPLICATION,
        error_type=type(exc).__name__,
        message=str(exc),
        retryable=retryable,
        details="".join(traceback.format_exception(exc)),
    )


def configuration_error(exc: BaseException) -> ErrorInfo:
    details = None
    if isinstance(exc, NondeterminismError):
        # Structured, so tools can show the divergence without parsing the message.
        details = msgspec.json.encode(
            {"position": exc.position, "recorded": exc.recorded, "requested": exc.requested}
        ).decode()
    return ErrorInfo(
        category=ErrorCategory.CONFIGURATION,
        error_type=type(exc).__name__,
        message=str(exc),
        retryable=False,
        details=details,
    )


DEFAULT_MAX_HISTORY_EVENTS = 50_000
"""Events one execution may record before it fails (``RuntimeOptions.max_history_events``).
Every uncached turn replays the whole history, and a store pages through it: an execution
that keeps growing should ``continue_as_new`` long before this."""


def history_limit_error(instance_id: str, execution_id: int, events: int, limit: int) -> ErrorInfo:
    """An execution that outgrew ``RuntimeOptions.max_history_events``."""
    return ErrorInfo(
        category=ErrorCategory.APPLICATION,
        error_type="HistoryLimitExceeded",
        message=(
            f"execution {execution_id} of {instance_id!r} recorded {events} history events, "
            f"more than the limit of {limit} (RuntimeOptions.max_history_events); call "
            "ctx.continue_as_new(...) periodically so each execution starts a fresh history"
        ),
        retryable=False,
    )


def corrupt_history_error(problem: str) -> ErrorInfo:
    """The stored history cannot be replayed at all (not a user error)."""
    return ErrorInfo(
        category=ErrorCategory.INFRASTRUCTURE,
        error_type="CorruptHistory",
        message=problem,
        retryable=False,
    )


def poison_error(message: str) -> ErrorInfo:
    """A message delivered more often than ``RuntimeOptions.max_deliveries`` allows."""
    return ErrorInfo(
        category=ErrorCategory.INFRASTRUCTURE,
        error_type="PoisonMessage",
        message=message,
        retryable=False,
    )


def cancelled_error(reason: str, error_type: str = "Cancelled") -> ErrorInfo:
    return ErrorInfo(
        category=ErrorCategory.CANCELLED,
        error_type=error_type,
        message=reason,
        retryable=False,
    )
