"""The timeline from histories alone: lanes, bars and marks, with no store and no clock."""

from __future__ import annotations

from typing import Any

from duro._status import ErrorCategory, ErrorInfo
from duro._ui._timeline import build, duration
from duro.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    EventRaised,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    SubOrchestrationScheduled,
    TimerCreated,
    TimerFired,
)

T0 = 1_700_000_000_000
ERROR = ErrorInfo(category=ErrorCategory.APPLICATION, error_type="ConnectionError", message="x")


class History:
    def __init__(self) -> None:
        self.events: list[HistoryEvent] = []

    def add(self, cls: type[Any], at: int, **fields: Any) -> History:
        self.events.append(cls(event_id=len(self.events) + 1, ts=T0 + at, **fields))
        return self


def started() -> History:
    return History().add(OrchestrationStarted, 0, name="o", version="1")


def test_retries_share_one_lane_with_their_back_off_between_attempts() -> None:
    h = (
        started()
        .add(ActivityScheduled, 0, seq=1, name="charge")
        .add(ActivityFailed, 100, seq=1, error=ERROR)
        .add(TimerCreated, 100, seq=2, fire_at=T0 + 300)
        .add(TimerFired, 300, seq=2)
        .add(ActivityScheduled, 300, seq=3, name="charge", attempt=2)
        .add(ActivityCompleted, 400, seq=3)
        .add(OrchestrationCompleted, 400)
    )

    timeline = build(h.events, now_ms=T0 + 10_000)

    [lane] = timeline.lanes
    assert (lane.label, lane.attempts, lane.outcome) == ("charge", 2, "completed")
    assert [(b.outcome, b.start_ms - T0, b.end_ms) for b in lane.bars] == [
        ("failed", 0, T0 + 100),
        ("backoff", 100, T0 + 300),
        ("completed", 300, T0 + 400),
    ]
    assert lane.bars[0].detail == "ConnectionError: x"
    assert (timeline.end_ms, timeline.ended) == (T0 + 400, True)
    assert timeline.percent(T0 + 100) == 25.0


def test_a_new_call_of_the_same_activity_gets_its_own_lane() -> None:
    h = (
        started()
        .add(ActivityScheduled, 0, seq=1, name="pack")
        .add(ActivityScheduled, 0, seq=2, name="pack")
        .add(ActivityCompleted, 50, seq=1)
        .add(ActivityFailed, 60, seq=2, error=ERROR)
    )

    lanes = build(h.events, now_ms=T0 + 100).lanes

    assert [(lane.label, lane.outcome, lane.attempts) for lane in lanes] == [
        ("pack", "completed", 1),
        ("pack", "failed", 1),
    ]


def test_a_running_execution_ends_at_now_and_shows_what_is_still_open() -> None:
    h = (
        started()
        .add(ActivityScheduled, 0, seq=1, name="slow")
        .add(SubOrchestrationScheduled, 0, seq=2, name="kid", instance_id="i-kid")
        .add(TimerCreated, 0, seq=3, fire_at=T0 + 1500)
        .add(EventRaised, 200, name="go")
    )

    timeline = build(h.events, now_ms=T0 + 1000)

    signals, slow, kid, timer = timeline.lanes
    assert (signals.kind, [m.label for m in signals.marks]) == ("signals", ["event 'go'"])
    assert (slow.outcome, slow.bars[0].end_ms) == ("running", None)
    assert (kid.kind, kid.link, kid.outcome) == ("child", "i-kid", "running")
    assert (timer.label, timer.outcome) == ("timer 1.5 s", "waiting")
    assert timeline.end_ms == T0 + 1500  # the timer's due time, later than now
    assert not timeline.ended


def test_a_far_timer_stretches_the_view_to_twice_what_has_passed_at_most() -> None:
    h = started().add(TimerCreated, 0, seq=1, fire_at=T0 + 30 * 86_400_000)

    timeline = build(h.events, now_ms=T0 + 60_000)

    assert timeline.end_ms == T0 + 120_000
    assert timeline.lanes[0].label == "timer 30 d"


def test_work_left_open_when_the_execution_ended_counts_as_cancelled() -> None:
    h = (
        started()
        .add(ActivityScheduled, 0, seq=1, name="slow")
        .add(TimerCreated, 0, seq=2, fire_at=T0 + 9_000)
        .add(CancelRequested, 500, reason="stop")
        .add(OrchestrationFailed, 500, error=ERROR)
    )

    timeline = build(h.events, now_ms=T0 + 99_000)

    signals, slow, timer = timeline.lanes
    assert [m.kind for m in signals.marks] == ["cancel"]
    assert (slow.outcome, slow.bars[0].end_ms) == ("cancelled", T0 + 500)
    assert (timer.outcome, timer.bars[0].end_ms) == ("cancelled", T0 + 500)
    assert timeline.end_ms == T0 + 500


def test_durations_read_like_people_write_them() -> None:
    assert [duration(ms) for ms in (0, 120, 3200, 65_000, 7_380_000, 90_000_000)] == [
        "0 ms",
        "120 ms",
        "3.2 s",
        "1 min 5 s",
        "2 h 3 min",
        "1 d 1 h",
    ]
