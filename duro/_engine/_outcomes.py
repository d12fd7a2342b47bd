"""How a turn ends: commit its changes or defer the batch, and failures as ``ErrorInfo``."""

from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from .._errors import NondeterminismError
from .._records import TurnChanges
from .._status import ErrorCategory, ErrorInfo

if TYPE_CHECKING:
    from ._execution import Execution


class ContinueAsNewSignal(BaseException):
    """Raised by ``ctx.continue_as_new``; a BaseException so ``except Exception`` ignores it."""

    def __init__(self, input: msgspec.Raw, version: str | None) -> None:
        super().__init__("continue_as_new")
        self.input = input
        self.version = version


@dataclass(slots=True)
class Commit:
    """Commit ``changes``; ``execution`` is the live execution, worth caching if it runs on."""

    changes: TurnChanges
    execution: Execution | None = None


class DeferReason(enum.Enum):
    """Why a batch is put back without a commit. The shell decides how long it waits."""

    VERSION_NOT_REGISTERED = "version_not_registered"
    """A known orchestration name, but not the version history needs: a worker running a
    newer (or older) deployment may have it."""
    NOT_STARTED = "not_started"
    """Messages for an instance that has no start yet; a start may still arrive."""
    CACHE_EVICTED = "cache_evicted"
    """The store left history out for an execution the cache no longer holds: fetch again."""


@dataclass(frozen=True, slots=True)
class Defer:
    """Put the batch back unchanged; it was not the messages' fault (no delivery counted)."""

    reason: DeferReason
    detail: str


TurnDecision = Commit | Defer


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
