"""Durable retry policies for activities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"RetryPolicy durations are seconds or a timedelta, got {value!r}")
    return float(value)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retry a failed activity with durable back-off timers between attempts.

    Delay before attempt ``n + 1``: with ``backoff="exponential"`` (the default)
    ``initial_interval * backoff_coefficient ** (n - 1)``, with ``backoff="linear"``
    ``initial_interval * n``; either capped at ``max_interval``. ``attempt_timeout`` races
    each attempt against a durable timer; a timed-out attempt is cancelled and counts as a
    failure (``error_type`` "ActivityTimeout"). ``total_timeout`` bounds all attempts and the
    back-off between them, from the first attempt's start: an attempt still running at the
    deadline is cancelled and fails (not retried), and no retry is scheduled whose back-off
    would end past it (the last failure is raised). Errors whose type name is in
    ``non_retryable`` fail at once.
    """

    max_attempts: int = 3
    initial_interval: float | timedelta = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float | timedelta | None = 60.0
    attempt_timeout: float | timedelta | None = None
    non_retryable: Sequence[str | type[BaseException]] = ()
    total_timeout: float | timedelta | None = None
    backoff: Literal["exponential", "linear"] = "exponential"

    def __post_init__(self) -> None:
        # Each check names the field; "not x >= y" also refuses NaN, which compares False.
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"RetryPolicy.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if not _finite(self.backoff_coefficient) or not self.backoff_coefficient >= 1:
            raise ValueError(
                "RetryPolicy.backoff_coefficient must be a finite number of at least 1, "
                f"got {self.backoff_coefficient!r}"
            )
        initial = _seconds(self.initial_interval)
        if initial is None or not _finite(initial) or not initial >= 0:
            raise ValueError(
                "RetryPolicy.initial_interval must be a finite number of seconds, at least 0, "
                f"got {self.initial_interval!r}"
            )
        cap = _seconds(self.max_interval)
        if cap is not None and (not _finite(cap) or not cap >= 0):
            raise ValueError(
                "RetryPolicy.max_interval must be None or a finite number of seconds, "
                f"at least 0, got {self.max_interval!r}"
            )
        timeout = _seconds(self.attempt_timeout)
        if timeout is not None and (not _finite(timeout) or not timeout > 0):
            raise ValueError(
                "RetryPolicy.attempt_timeout must be None or a positive, finite number of "
                f"seconds, got {self.attempt_timeout!r}"
            )
        total = _seconds(self.total_timeout)
        if total is not None and (not _finite(total) or not total > 0):
            raise ValueError(
                "RetryPolicy.total_timeout must be None or a positive, finite number of "
                f"seconds, got {self.total_timeout!r}"
            )
        if self.backoff not in ("exponential", "linear"):
            raise ValueError(
                f"RetryPolicy.backoff must be 'exponential' or 'linear', got {self.backoff!r}"
            )
        for entry in self.non_retryable:
            if isinstance(entry, str):
                continue
            if not (isinstance(entry, type) and issubclass(entry, BaseException)):
                raise ValueError(
                    f"RetryPolicy.non_retryable takes exception types or their names, got {entry!r}"
                )

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        initial = _seconds(self.initial_interval) or 0.0
        if self.backoff == "linear":
            delay = initial * attempt
        else:
            delay = initial * self.backoff_coefficient ** (attempt - 1)
        cap = _seconds(self.max_interval)
        return min(delay, cap) if cap is not None else delay

    @property
    def timeout_seconds(self) -> float | None:
        """``attempt_timeout`` in seconds, or None."""
        return _seconds(self.attempt_timeout)

    @property
    def total_timeout_seconds(self) -> float | None:
        """``total_timeout`` in seconds, or None."""
        return _seconds(self.total_timeout)

    def is_retryable(self, error_type: str) -> bool:
        """Whether a failure of ``error_type`` (an exception class name) may be retried."""
        names = {n if isinstance(n, str) else n.__name__ for n in self.non_retryable}
        return error_type not in names
