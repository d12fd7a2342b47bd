"""The five-field cron parser and its next-due-time search (UTC), without a store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import duro
from duro._schedules._cron import CronExpression


def _next(expression: str, after: datetime) -> datetime:
    return CronExpression.parse(expression).next_after(after)


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


def test_every_minute_is_the_next_whole_minute_strictly_after() -> None:
    assert _next("* * * * *", _at(2024, 1, 1, 10, 0)) == _at(2024, 1, 1, 10, 1)
    assert _next("* * * * *", _at(2024, 1, 1, 10, 0, 30)) == _at(2024, 1, 1, 10, 1)


def test_lists_ranges_and_steps_expand_within_the_field() -> None:
    cron = CronExpression.parse("0,15-17,*/20 1-5/2 * * *")
    assert cron.minutes == {0, 15, 16, 17, 20, 40}
    assert cron.hours == {1, 3, 5}
    assert CronExpression.parse("10/25 * * * *").minutes == {10, 35}


def test_month_and_weekday_names_are_case_insensitive_and_sunday_is_0_or_7() -> None:
    cron = CronExpression.parse("0 0 * JAN-mar,Dec sun,7,Sat")
    assert cron.months == {1, 2, 3, 12}
    assert cron.weekdays == {0, 6}


def test_weekdays_skip_the_weekend() -> None:
    # 2024-01-05 is a Friday.
    assert _next("30 9 * * mon-fri", _at(2024, 1, 5, 10, 0)) == _at(2024, 1, 8, 9, 30)


def test_restricted_day_of_month_and_weekday_match_either() -> None:
    # The 13th, or any Friday: from 2024-01-01 (Monday) the first Friday is the 5th.
    assert _next("0 0 13 * fri", _at(2024, 1, 1)) == _at(2024, 1, 5)
    assert _next("0 0 13 * fri", _at(2024, 1, 12, 1)) == _at(2024, 1, 13)


def test_a_starred_day_field_means_both_must_match() -> None:
    # Every second day of the month that is also a Monday: January 15th 2024.
    assert _next("0 0 */2 * mon", _at(2024, 1, 1, 1)) == _at(2024, 1, 15)


def test_month_ends_and_leap_days() -> None:
    assert _next("0 12 31 * *", _at(2024, 2, 1)) == _at(2024, 3, 31, 12)
    assert _next("0 0 29 feb *", _at(2024, 3, 1)) == _at(2028, 2, 29)
    assert _next("59 23 31 12 *", _at(2024, 12, 31, 23, 59)) == _at(2025, 12, 31, 23, 59)


def test_macros_stand_for_their_expressions() -> None:
    assert _next("@daily", _at(2024, 1, 1, 0, 0)) == _at(2024, 1, 2)
    assert _next("@hourly", _at(2024, 1, 1, 0, 5)) == _at(2024, 1, 1, 1)
    assert _next("@weekly", _at(2024, 1, 1)) == _at(2024, 1, 7)  # Sunday
    assert _next("@yearly", _at(2024, 6, 1)) == _at(2025, 1, 1)


def test_matches_checks_one_minute() -> None:
    cron = CronExpression.parse("*/5 8 * * *")
    assert cron.matches(_at(2024, 1, 1, 8, 35))
    assert not cron.matches(_at(2024, 1, 1, 8, 36))
    assert not cron.matches(_at(2024, 1, 1, 9, 35))


@pytest.mark.parametrize(
    ("expression", "field", "says"),
    [
        ("* * * *", "expression", "4 field(s), needs 5"),
        ("* * * * * *", "expression", "6 field(s)"),
        ("@often", "expression", "unknown macro"),
        ("60 * * * *", "minute", "60 is outside 0-59"),
        ("* 24 * * *", "hour", "24 is outside 0-23"),
        ("* * 0 * *", "day of month", "0 is outside 1-31"),
        ("* * * 13 *", "month", "13 is outside 1-12"),
        ("* * * * 8", "day of week", "8 is outside 0-7"),
        ("* * * foo *", "month", "'foo' is not a number"),
        ("*/0 * * * *", "minute", "step '0'"),
        ("*/x * * * *", "minute", "step 'x'"),
        ("5-2 * * * *", "minute", "runs backwards"),
        ("1,,2 * * * *", "minute", "empty item"),
        ("0 0 30 feb *", "day of month", "day 30 never occurs"),
        ("-1 * * * *", "minute", "'' is not a number"),
    ],
)
def test_invalid_expressions_name_the_field_and_the_problem(
    expression: str, field: str, says: str
) -> None:
    with pytest.raises(duro.CronSyntaxError) as caught:
        CronExpression.parse(expression)
    assert caught.value.field == field
    assert says in caught.value.problem
    assert caught.value.expression == expression
    assert isinstance(caught.value, ValueError)
