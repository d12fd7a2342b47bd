"""What a turn produces: the turn result, KV state, and how failures become ``ErrorInfo``."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import msgspec

from .._errors import NondeterminismError
from .._history import HistoryEvent
from .._messages import ActivityTask, AnyOrchestratorMessage
from .._status import ErrorCategory, ErrorInfo, ExecutionStatus


class ContinueAsNewSignal(BaseException):
    """Raised by ``ctx.continue_as_new``; a BaseException so ``except Exception`` ignores it."""

    def __init__(self, input: msgspec.Raw, version: str | None) -> None:
        super().__init__("continue_as_new")
        self.input = input
        self.version = version


@dataclass(slots=True)
class KvState:
    value: bytes
    updated_at_ms: int


@dataclass(slots=True)
class TurnResult:
    """What a turn decided, for the shell to commit."""

    new_events: list[HistoryEvent] = field(default_factory=list)
    status: ExecutionStatus = ExecutionStatus.RUNNING
    output: bytes | None = None
    error: ErrorInfo | None = None
    activity_tasks: list[ActivityTask] = field(default_factory=list)
    cancelled_activities: list[int] = field(default_factory=list)
    """``seq`` numbers of this execution's activities to withdraw."""
    messages: list[tuple[AnyOrchestratorMessage, int | None]] = field(default_factory=list)
    """Orchestrator messages with their visible-at time (None: now)."""
    custom_status_changed: bool = False
    custom_status: bytes | None = None
    kv_clear_all: bool = False
    kv_changes: dict[str, bytes | None] = field(default_factory=dict)


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
