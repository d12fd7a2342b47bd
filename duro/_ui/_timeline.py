"""One execution's history as a timeline: which step ran when, and how it ended.

Pure: events in, lanes out (no I/O, no web framework), so it is tested from histories alone.
Each activity call is one lane whose bars are its attempts: a retry (``attempt`` > 1 of the
same activity after a failed attempt) joins the lane of the attempt it retries, and the
back-off timer the retry policy waited on between them becomes a ``backoff`` bar of that lane
instead of a lane of its own. Sub-orchestrations are lanes too; timers are lanes from created
to fired (or to when they are due); external events, mailbox messages, cancellation requests
and detached starts are marks on one ``signals`` lane. Times are the ``ts`` of the turns that
recorded the events: a bar starts when its step was scheduled and ends when the turn that saw
its result ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ContinuedAsNew,
    EventQueued,
    EventRaised,
    HistoryEvent,
    OrchestrationChained,
    OrchestrationCompleted,
    OrchestrationFailed,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    TaskCancelled,
    TimerCreated,
    TimerFired,
)


@dataclass(slots=True)
class Bar:
    """One span of a lane: an attempt, a back-off, a timer or a child's run."""

    start_ms: int
    end_ms: int | None
    """None while it has not ended (drawn up to the timeline's end)."""
    outcome: str
    """``completed``, ``failed``, ``cancelled``, ``running`` (no result yet), ``fired``,
    ``waiting`` (a timer not due yet) or ``backoff``."""
    label: str
    detail: str = ""
    """Tooltip text: the error, the attempt, the due time."""
    seq: int = 0


@dataclass(slots=True)
class Mark:
    """Something that happened at one moment: an event arrived, a cancellation, a start."""

    at_ms: int
    kind: str
    """``event``, ``message``, ``cancel``, ``start`` or ``end``."""
    label: str
    link: str | None = None
    """An instance id to link to (a detached start)."""


@dataclass(slots=True)
class Lane:
    """One row of the timeline."""

    kind: str
    """``activity``, ``child``, ``timer`` or ``signals``."""
    label: str
    seq: int
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    link: str | None = None
    """The child instance of a sub-orchestration lane."""

    @property
    def outcome(self) -> str:
        """How the lane's last bar ended (a lane of retries ends as its last attempt)."""
        return self.bars[-1].outcome if self.bars else ""

    @property
    def attempts(self) -> int:
        return sum(1 for bar in self.bars if bar.outcome != "backoff")


@dataclass(slots=True)
class Timeline:
    start_ms: int
    end_ms: int
    """The last event, ``now_ms`` for an execution still running, or the due time of a timer
    that is later still."""
    lanes: list[Lane]
    ended: bool

    @property
    def span_ms(self) -> int:
        return max(1, self.end_ms - self.start_ms)

    def percent(self, at_ms: int) -> float:
        """Where ``at_ms`` lies on the timeline, 0 to 100."""
        return min(100.0, max(0.0, (at_ms - self.start_ms) * 100.0 / self.span_ms))

    def width(self, bar: Bar) -> float:
        """A bar's width in percent, never so thin that it cannot be seen or hovered."""
        end = self.end_ms if bar.end_ms is None else bar.end_ms
        return max(0.6, self.percent(end) - self.percent(bar.start_ms))


def build(events: list[HistoryEvent], now_ms: int) -> Timeline:
    """The timeline of one execution's ``events``; ``now_ms`` ends whatever has not ended."""
    if not events:
        return Timeline(start_ms=now_ms, end_ms=now_ms + 1, lanes=[], ended=False)
    lanes: list[Lane] = []
    by_seq: dict[int, Lane] = {}
    timers: dict[int, Lane] = {}
    signals = Lane(kind="signals", label="events", seq=0)
    ended = False
    end_ms = events[-1].ts
    for event in events:
        if isinstance(event, ActivityScheduled):
            lane = _retried_lane(lanes, event) or Lane("activity", event.name, event.seq)
            if lane.bars:
                _take_backoff(lanes, timers, lane, event)
            else:
                lanes.append(lane)
            lane.bars.append(
                Bar(event.ts, None, "running", f"attempt {event.attempt}", seq=event.seq)
            )
            by_seq[event.seq] = lane
        elif isinstance(event, SubOrchestrationScheduled):
            lane = Lane("child", event.name, event.seq, link=event.instance_id)
            lane.bars.append(Bar(event.ts, None, "running", event.instance_id, seq=event.seq))
            lanes.append(lane)
            by_seq[event.seq] = lane
        elif isinstance(event, TimerCreated):
            lane = Lane("timer", f"timer {duration(event.fire_at - event.ts)}", event.seq)
            due = f"due at +{duration(event.fire_at - events[0].ts)}"
            lane.bars.append(Bar(event.ts, event.fire_at, "waiting", "timer", due, event.seq))
            lanes.append(lane)
            timers[event.seq] = lane
        elif isinstance(event, TimerFired):
            lane_or_none = timers.get(event.seq)
            if lane_or_none is not None:
                _close(lane_or_none, event.seq, event.ts, "fired")
        elif isinstance(event, ActivityCompleted | SubOrchestrationCompleted):
            _close(by_seq.get(event.seq), event.seq, event.ts, "completed")
        elif isinstance(event, ActivityFailed | SubOrchestrationFailed):
            _close(by_seq.get(event.seq), event.seq, event.ts, "failed", str(event.error))
        elif isinstance(event, TaskCancelled):
            _close(by_seq.get(event.target), event.target, event.ts, "cancelled")
        elif isinstance(event, EventRaised):
            signals.marks.append(Mark(event.ts, "event", f"event {event.name!r}"))
        elif isinstance(event, EventQueued):
            signals.marks.append(Mark(event.ts, "message", f"message on {event.queue!r}"))
        elif isinstance(event, CancelRequested):
            signals.marks.append(Mark(event.ts, "cancel", f"cancel requested: {event.reason}"))
        elif isinstance(event, OrchestrationChained):
            label = f"started {event.name} as {event.instance_id}"
            signals.marks.append(Mark(event.ts, "start", label, link=event.instance_id))
        elif isinstance(event, OrchestrationCompleted | OrchestrationFailed | ContinuedAsNew):
            ended = True
            end_ms = event.ts
    start_ms = events[0].ts
    if not ended:
        end_ms = max(end_ms, now_ms)
    # A timer due later stretches the view to its due time, but never to more than twice
    # what has passed: a 30-day timer must not squeeze the rest into a sliver.
    horizon = end_ms if ended else start_ms + 2 * max(1, end_ms - start_ms)
    for lane in lanes:
        for bar in lane.bars:
            if bar.outcome == "waiting" and bar.end_ms is not None:
                if ended:  # it never fired: the execution ended first (a select's loser)
                    bar.end_ms = min(bar.end_ms, end_ms)
                    bar.outcome = "cancelled"
                else:
                    end_ms = max(end_ms, min(bar.end_ms, horizon))
            elif bar.end_ms is None and ended:
                bar.end_ms = end_ms  # the execution ended first: its work was withdrawn
                bar.outcome = "cancelled"
    if signals.marks:
        lanes.insert(0, signals)
    return Timeline(start_ms, max(end_ms, start_ms + 1), lanes, ended)


def _retried_lane(lanes: list[Lane], event: ActivityScheduled) -> Lane | None:
    """The lane of the attempt ``event`` retries: the latest lane of the same activity whose
    last attempt was ``event.attempt - 1`` and did not complete."""
    if event.attempt < 2:
        return None
    for lane in reversed(lanes):
        if lane.kind != "activity" or lane.label != event.name:
            continue
        last = lane.bars[-1]
        if last.label == f"attempt {event.attempt - 1}" and last.outcome in ("failed", "cancelled"):
            return lane
    return None


def _take_backoff(
    lanes: list[Lane], timers: dict[int, Lane], lane: Lane, event: ActivityScheduled
) -> None:
    """The retry policy's back-off is the last timer scheduled between the failed attempt and
    this one; it moves from a lane of its own into the activity's lane."""
    previous = lane.bars[-1].seq
    between = [seq for seq in timers if previous < seq < event.seq]
    if not between:
        return
    seq = max(between)
    timer = timers.pop(seq)
    if timer in lanes:
        lanes.remove(timer)
    bar = timer.bars[0]
    lane.bars.append(Bar(bar.start_ms, bar.end_ms, "backoff", "back-off", bar.detail, seq))


def _close(lane: Lane | None, seq: int, at_ms: int, outcome: str, detail: str = "") -> None:
    if lane is None:
        return
    for bar in reversed(lane.bars):
        if bar.seq == seq:
            bar.end_ms = at_ms
            bar.outcome = outcome
            if detail:
                bar.detail = detail
            return


def duration(ms: int) -> str:
    """``ms`` for people: 120 ms, 3.2 s, 4 min 5 s, 2 h 3 min, 3 d 4 h."""
    ms = max(0, ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {second} s" if second else f"{minutes} min"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minute} min" if minute else f"{hours} h"
    days, hour = divmod(hours, 24)
    return f"{days} d {hour} h" if hour else f"{days} d"
