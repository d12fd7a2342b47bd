"""Five-field cron expressions, evaluated in UTC.

``minute hour day-of-month month day-of-week``; each field a comma list of ``*``, ``N``,
``A-B`` and any of those with ``/STEP``. Months and weekdays also by their English
three-letter names (``jan``, ``mon``), weekdays 0-7 with both 0 and 7 for Sunday. As in Vixie
cron, when both day fields are restricted (neither starts with ``*``) a day matches either;
otherwise it must match both.
The macros ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight`` and
``@hourly`` stand for their usual expressions.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from .._errors import CronSyntaxError

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS: Final = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS: Final = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

# name, lowest, highest, names
_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)
_MINUTE: Final = timedelta(minutes=1)
# Every valid expression matches within eight years (29 February skips at most one leap
# year, as 2100 is not one); searching longer means a bug, not a rare date.
_SEARCH_LIMIT: Final = timedelta(days=366 * 9)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed cron expression: the values each field allows."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 is Sunday."""
    any_day: bool
    """Day of month starts with ``*`` (``*`` or ``*/N``)."""
    any_weekday: bool
    """Day of week starts with ``*``."""

    @classmethod
    def parse(cls, expression: str) -> CronExpression:
        """Parse ``expression``; ``CronSyntaxError`` naming the field and the problem."""
        if not isinstance(expression, str):
            raise CronSyntaxError(repr(expression), "expression", "must be a string")
        text = _MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            problem = f"has {len(parts)} field(s), needs 5"
            if text.strip().startswith("@"):
                problem = f"unknown macro; known are {', '.join(sorted(_MACROS))}"
            raise CronSyntaxError(expression, "expression", problem)
        values = [
            _parse_field(expression, part, name, low, high, names)
            for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in values[4])
        parsed = cls(
            expression=expression,
            minutes=values[0],
            hours=values[1],
            days=values[2],
            months=values[3],
            weekdays=weekdays,
            any_day=parts[2].startswith("*"),
            any_weekday=parts[4].startswith("*"),
        )
        if parsed.any_weekday and not parsed.any_day:
            longest = max(calendar.monthrange(2000, m)[1] for m in parsed.months)
            if min(parsed.days) > longest:
                raise CronSyntaxError(
                    expression,
                    "day of month",
                    f"day {min(parsed.days)} never occurs in the months allowed",
                )
        return parsed

    def matches(self, moment: datetime) -> bool:
        """Whether the minute of ``moment`` (UTC) is one the expression names."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.weekday() + 1) % 7 in self.weekdays
        # Vixie cron: a day field starting with "*" (also "*/2") makes the two fields both
        # apply; only when both are restricted does a day match either.
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (an aware datetime)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + _MINUTE
        current = start
        while current - start < _SEARCH_LIMIT:
            if current.month not in self.months:
                year, month = divmod(current.month, 12)
                current = current.replace(
                    year=current.year + year, month=month + 1, day=1, hour=0, minute=0
                )
            elif not self._day_matches(current):
                current = current.replace(hour=0, minute=0) + timedelta(days=1)
            elif current.hour not in self.hours:
                current = current.replace(minute=0) + timedelta(hours=1)
            elif current.minute not in self.minutes:
                current += _MINUTE
            else:
                return current
        raise CronSyntaxError(self.expression, "expression", "never matches a date")


def _parse_field(
    expression: str, text: str, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    allowed: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronSyntaxError(expression, name, f"empty item in {text!r}")
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronSyntaxError(
                    expression, name, f"step {step_text!r} in {item!r} must be a positive number"
                )
            step = int(step_text)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first = _value(expression, first_text, name, low, high, names)
            last = _value(expression, last_text, name, low, high, names)
            if first > last:
                raise CronSyntaxError(
                    expression, name, f"range {span!r} runs backwards ({first} > {last})"
                )
        else:
            first = _value(expression, span, name, low, high, names)
            last = high if slash else first
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _value(
    expression: str, text: str, name: str, low: int, high: int, names: dict[str, int]
) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        known = f" or a name ({', '.join(names)})" if names else ""
        raise CronSyntaxError(
            expression, name, f"{text!r} is not a number from {low} to {high}{known}"
        )
    number = int(text)
    if not low <= number <= high:
        raise CronSyntaxError(expression, name, f"{number} is outside {low}-{high}")
    return number
