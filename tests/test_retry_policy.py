"""RetryPolicy refuses values that make no sense, naming the field, when it is built."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

import duro


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"initial_interval": math.nan}, "initial_interval"),
        ({"initial_interval": -1}, "initial_interval"),
        ({"initial_interval": "1"}, "durations"),
        ({"max_interval": -1}, "max_interval"),
        ({"max_interval": math.inf}, "max_interval"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient"),
        ({"backoff_coefficient": math.nan}, "backoff_coefficient"),
        ({"attempt_timeout": 0}, "attempt_timeout"),
        ({"attempt_timeout": math.nan}, "attempt_timeout"),
        ({"attempt_timeout": timedelta(seconds=-1)}, "attempt_timeout"),
        ({"total_timeout": 0}, "total_timeout"),
        ({"total_timeout": math.inf}, "total_timeout"),
        ({"backoff": "quadratic"}, "backoff"),
        ({"non_retryable": [5]}, "non_retryable"),
        ({"non_retryable": [int]}, "non_retryable"),
    ],
)
def test_nonsense_values_are_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        duro.RetryPolicy(**fields)


def test_sensible_values_are_kept() -> None:
    policy = duro.RetryPolicy(
        max_attempts=5,
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=1.0,
        max_interval=None,
        attempt_timeout=30,
        non_retryable=[KeyError, "CardDeclined"],
    )
    assert policy.delay_after(3) == pytest.approx(0.2)
    assert not policy.is_retryable("KeyError") and policy.is_retryable("ValueError")


def test_linear_backoff_grows_by_the_initial_interval_up_to_the_cap() -> None:
    policy = duro.RetryPolicy(initial_interval=2, backoff="linear", max_interval=7)
    assert [policy.delay_after(n) for n in range(1, 6)] == [2, 4, 6, 7, 7]
    exponential = duro.RetryPolicy(initial_interval=2, max_interval=None)
    assert [exponential.delay_after(n) for n in range(1, 5)] == [2, 4, 8, 16]


def test_total_timeout_takes_seconds_or_a_timedelta() -> None:
    assert duro.RetryPolicy(total_timeout=timedelta(minutes=2)).total_timeout_seconds == 120
    assert duro.RetryPolicy().total_timeout_seconds is None
