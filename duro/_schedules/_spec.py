"""What a schedule is (its spec), what it has done (its state), and when it is due.

Both are persisted (the schedule instance's input, carried through ``continue_as_new``, and
its custom status), so they are msgspec Structs whose new fields get defaults. Times are
milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

from .._history import NULL
from ._cron import CronExpression

Overlap = Literal["skip", "buffer_one", "allow"]
OVERLAPS: Final[tuple[str, ...]] = ("skip", "buffer_one", "allow")

SCHEDULE_ORCHESTRATION: Final = "duro:schedule"
"""The built-in orchestration every schedule instance runs."""
SCHEDULE_PREFIX: Final = "duro:schedule:"
"""A schedule's instance id is this prefix and the schedule id."""
CONTROL_QUEUE: Final = "duro:schedule-control"
"""The mailbox queue of pause, resume and trigger requests."""
MAX_SCHEDULE_ID_LENGTH: Final = 150
"""Leaves room in the 200-character instance id for ``@<due time>`` and a trigger suffix."""


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What ``Client.create_schedule`` was given."""

    schedule_id: str
    orchestration: str
    version: str | None = None
    input: msgspec.Raw = NULL
    every_ms: int | None = None
    cron: str | None = None
    start_at_ms: int | None = None
    end_at_ms: int | None = None
    overlap: str = "skip"


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True):
    """The schedule instance's input: its spec and what it has done so far."""

    spec: ScheduleSpec
    after_ms: int | None = None
    """Due times at or before this are done (fired, skipped, or passed while paused). None
    until the first turn, which sets it to just before its own time."""
    paused: bool = False
    running: str | None = None
    """The run started last that has not reported its end (``skip``, ``buffer_one``)."""
    buffered: str | None = None
    """``buffer_one``: the run to start when ``running`` ends."""
    last_run_id: str | None = None
    last_run_at_ms: int | None = None
    runs_started: int = 0
    runs_skipped: int = 0


class ScheduleSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The schedule's custom status: its state and the next due time (what clients read)."""

    state: ScheduleState
    next_run_at_ms: int | None = None


class Control(msgspec.Struct, frozen=True, kw_only=True):
    """A request in the schedule's control queue."""

    op: str
    """``"pause"``, ``"resume"`` or ``"trigger"``."""
    run_id: str | None = None
    """``trigger``: the id of the run to start."""


def instance_id_of(schedule_id: str) -> str:
    return SCHEDULE_PREFIX + schedule_id


def stamp(ms: int) -> str:
    """``YYYYMMDDTHHMMSSZ``: the due-time part of a run id."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def run_id_of(schedule_id: str, due_ms: int) -> str:
    """The predictable id of the run for one due time."""
    return f"{schedule_id}@{stamp(due_ms)}"


def next_due(spec: ScheduleSpec, after_ms: int) -> int | None:
    """The first due time strictly after ``after_ms`` (within the window), or None when
    there is none before ``end_at``."""
    if spec.every_ms is not None:
        anchor = spec.start_at_ms or 0
        if after_ms < anchor:
            due = anchor
        else:
            due = anchor + ((after_ms - anchor) // spec.every_ms + 1) * spec.every_ms
    else:
        cron = _parsed(spec.cron or "")
        floor = after_ms
        if spec.start_at_ms is not None and spec.start_at_ms - 1 > floor:
            floor = spec.start_at_ms - 1
        due = _ms(cron.next_after(datetime.fromtimestamp(floor / 1000, UTC)))
    if spec.end_at_ms is not None and due > spec.end_at_ms:
        return None
    return due


def latest_due(spec: ScheduleSpec, due_ms: int, now_ms: int) -> int:
    """The last due time at or before ``now_ms``, from ``due_ms`` (itself due) on: a timer
    that fired late, after downtime, catches up once, for the latest time it missed."""
    if spec.every_ms is not None:
        bound = now_ms if spec.end_at_ms is None else min(now_ms, spec.end_at_ms)
        if bound <= due_ms:
            return due_ms
        return due_ms + (bound - due_ms) // spec.every_ms * spec.every_ms
    latest = due_ms
    while (following := next_due(spec, latest)) is not None and following <= now_ms:
        latest = following
    return latest


@functools.lru_cache(maxsize=64)
def _parsed(expression: str) -> CronExpression:
    return CronExpression.parse(expression)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
