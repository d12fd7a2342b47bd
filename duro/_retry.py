"""Durable retry policies for activities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retry a failed activity with durable back-off timers between attempts.

    Delay before attempt ``n + 1`` is ``initial_interval * backoff_coefficient ** (n - 1)``,
    capped at ``max_interval``. ``attempt_timeout`` races each attempt against a durable timer;
    a timed-out attempt is cancelled and counts as a failure (``error_type`` "ActivityTimeout").
    Errors whose type name is in ``non_retryable`` fail at once.
    """

    max_attempts: int = 3
    initial_interval: float | timedelta = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float | timedelta | None = 60.0
    attempt_timeout: float | timedelta | None = None
    non_retryable: Sequence[str | type[BaseException]] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.backoff_coefficient < 1:
            raise ValueError("RetryPolicy.backoff_coefficient must be at least 1")
        if (_seconds(self.initial_interval) or 0) < 0:
            raise ValueError("RetryPolicy.initial_interval cannot be negative")
        timeout = _seconds(self.attempt_timeout)
        if timeout is not None and timeout <= 0:
            raise ValueError("RetryPolicy.attempt_timeout must be positive")

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        delay = (_seconds(self.initial_interval) or 0.0) * self.backoff_coefficient ** (attempt - 1)
        cap = _seconds(self.max_interval)
        return min(delay, cap) if cap is not None else delay

    @property
    def timeout_seconds(self) -> float | None:
        """``attempt_timeout`` in seconds, or None."""
        return _seconds(self.attempt_timeout)

    def is_retryable(self, error_type: str) -> bool:
        """Whether a failure of ``error_type`` (an exception class name) may be retried."""
        names = {n if isinstance(n, str) else n.__name__ for n in self.non_retryable}
        return error_type not in names
