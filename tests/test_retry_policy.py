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
