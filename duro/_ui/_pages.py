"""What each page shows, read from the store: the instance list and one instance.

Every read is bounded by a page: one ``list_instances`` page and one ``count_instances`` (at
most every ``counts_every`` seconds, shared by every viewer) for the list; the record, the
execution ids, one execution's history and the KV map for an instance. Children come from the
shown execution's history, not from a query across the store (a cross-partition query per
view on Cosmos DB).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from .._errors import InvalidInstanceIdError
from .._history import (
    ContinuedAsNew,
    HistoryEvent,
    OrchestrationChained,
    OrchestrationStarted,
    SubOrchestrationScheduled,
)
from .._ids import validate_instance_id
from .._records import InstanceRecord
from .._status import State
from ..providers import InstanceCountQuery, InstanceCounts, InstanceQuery, Provider
from ..providers._types import LISTED_STATES
from . import _present as present
from ._timeline import Bar, Lane, Timeline, build, duration

COUNT_LIMIT = 10_000
"""Counts by state stop here ("10,000+"): counting costs at most this many index entries."""
PAGE_SIZES = (20, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50


class BadFilter(ValueError):
    """A filter the list cannot apply; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Filters:
    """The list's filters, as read from the query string."""

    states: tuple[str, ...] = ()
    name: str = ""
    prefix: str = ""
    created_after: str = ""
    created_before: str = ""
    limit: int = DEFAULT_PAGE_SIZE
    after: str = ""

    @classmethod
    def parse(cls, params: Any) -> Filters:
        """From Starlette's ``QueryParams`` (anything with ``get`` and ``getlist``)."""
        states = tuple(s for s in params.getlist("state") if s)
        known = {s.value for s in LISTED_STATES}
        unknown = [s for s in states if s not in known]
        if unknown:
            raise BadFilter(f"unknown state {unknown[0]!r}: expected one of {sorted(known)}")
        raw_limit = params.get("limit") or str(DEFAULT_PAGE_SIZE)
        try:
            limit = int(raw_limit)
        except ValueError:
            raise BadFilter(f"page size {raw_limit!r} is not a number") from None
        return cls(
            states=states,
            name=(params.get("name") or "").strip(),
            prefix=(params.get("prefix") or "").strip(),
            created_after=(params.get("created_after") or "").strip(),
            created_before=(params.get("created_before") or "").strip(),
            limit=min(max(limit, 1), max(PAGE_SIZES)),
            after=params.get("after") or "",
        )

    def query(self) -> InstanceQuery:
        return InstanceQuery(
            states=frozenset(State(s) for s in self.states) or None,
            name=self.name or None,
            instance_id_prefix=self.prefix or None,
            created_after_ms=_moment_ms(self.created_after, "created after"),
            created_before_ms=_moment_ms(self.created_before, "created before"),
            limit=self.limit,
            continuation=self.after or None,
        )

    def url(self, base: str, **changes: Any) -> str:
        """This list's address with ``changes`` (a new state filter starts from page one)."""
        values = {
            "state": list(self.states),
            "name": self.name,
            "prefix": self.prefix,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "limit": "" if self.limit == DEFAULT_PAGE_SIZE else str(self.limit),
            "after": self.after,
            **changes,
        }
        pairs = [
            (key, item)
            for key, value in values.items()
            for item in (value if isinstance(value, list) else [value])
            if item
        ]
        return f"{base}/instances" + (f"?{urlencode(pairs)}" if pairs else "")

    @property
    def any(self) -> bool:
        return bool(
            self.states or self.name or self.prefix or self.created_after or self.created_before
        )


def _moment_ms(text: str, what: str) -> int | None:
    if not text:
        return None
    import argparse

    from .._cli._parser import moment

    try:
        return int(moment(text).timestamp() * 1000)
    except argparse.ArgumentTypeError as exc:
        raise BadFilter(f"{what}: {exc}") from None


class CountsCache:
    """The store's counts by state, read at most every ``every`` seconds for all viewers."""

    def __init__(self, store: Provider, every: float) -> None:
        self._store = store
        self._every = every
        self._value: InstanceCounts | None = None
        self._read_at = 0.0

    async def get(self) -> InstanceCounts:
        now = time.monotonic()
        if self._value is None or now - self._read_at >= self._every:
            self._value = await self._store.count_instances(InstanceCountQuery(at_most=COUNT_LIMIT))
            self._read_at = now
        return self._value

    def forget(self) -> None:
        """Read afresh next time (after an action changed the store)."""
        self._value = None


@dataclass(frozen=True, slots=True)
class CountChip:
    state: str
    text: str
    url: str
    selected: bool


def count_chips(counts: InstanceCounts, filters: Filters, base: str) -> list[CountChip]:
    chips = []
    for state in LISTED_STATES:
        n = counts.counts.get(state, 0)
        text = f"{n:,}+" if state in counts.capped else f"{n:,}"
        selected = filters.states == (state.value,)
        url = filters.url(base, state=[] if selected else [state.value], after="")
        chips.append(CountChip(state.value, text, url, selected))
    return chips


def instance_url(base: str, instance_id: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{base}/instances/{quote(instance_id, safe='')}" + (f"?{query}" if query else "")


# -- one instance ---------------------------------------------------------------------------------


class UnknownInstance(LookupError):
    pass


@dataclass(slots=True)
class InstanceView:
    """Everything the instance page shows."""

    record: InstanceRecord
    executions: list[int]
    execution: int
    events: list[HistoryEvent]
    kv: list[tuple[str, str, str, str]]
    """``(key, value, local time, ISO time)`` by key."""
    timeline: Timeline
    now_ms: int
    children: list[tuple[str, str]] = field(default_factory=list)
    """``(instance id, how)``: sub-orchestrations and detached starts of this execution."""
    input: str | None = None
    continued_with: str | None = None
    """The input the next execution got (an execution that continued as new)."""

    @property
    def output(self) -> str:
        return present.payload(self.record.output)

    @property
    def is_current(self) -> bool:
        return self.execution == self.record.execution_id

    @property
    def live(self) -> bool:
        """Worth refreshing: the instance may still change what this page shows."""
        return self.is_current and not self.record.state.is_terminal


async def read_instance(store: Provider, instance_id: str, execution: int | None) -> InstanceView:
    try:
        validate_instance_id(instance_id)
    except InvalidInstanceIdError:
        raise UnknownInstance(instance_id) from None
    record = await store.read_instance(instance_id)
    if record is None:
        raise UnknownInstance(instance_id)
    executions = await store.list_executions(instance_id) if record.execution_id else []
    shown = execution if execution in executions else record.execution_id
    events = await store.read_history(instance_id, shown) if shown else []
    entries = await store.get_kv_items(instance_id)
    now_ms = int(time.time() * 1000)
    view = InstanceView(
        record=record,
        executions=executions,
        execution=shown,
        events=events,
        kv=[
            (
                key,
                present.payload(entry.value),
                present.local_time(entry.updated_at_ms),
                present.iso(entry.updated_at_ms),
            )
            for key, entry in sorted(entries.items())
        ],
        timeline=build(events, now_ms),
        now_ms=now_ms,
    )
    for event in events:
        if isinstance(event, OrchestrationStarted):
            view.input = present.payload(bytes(event.input))
        elif isinstance(event, SubOrchestrationScheduled):
            view.children.append((event.instance_id, f"sub-orchestration {event.name}"))
        elif isinstance(event, OrchestrationChained):
            view.children.append((event.instance_id, f"detached start of {event.name}"))
        elif isinstance(event, ContinuedAsNew):
            view.continued_with = present.payload(bytes(event.input))
    return view


# -- the timeline, ready to draw --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrawnBar:
    outcome: str
    css: str
    left: str
    width: str
    title: str
    label: str


@dataclass(frozen=True, slots=True)
class DrawnMark:
    css: str
    left: str
    title: str


@dataclass(frozen=True, slots=True)
class DrawnLane:
    lane: Lane
    bars: list[DrawnBar]
    marks: list[DrawnMark]


def draw(timeline: Timeline) -> list[DrawnLane]:
    """Positions in percent of the timeline's width, and a tooltip for every bar and mark."""
    start = timeline.start_ms
    drawn = []
    for lane in timeline.lanes:
        bars = [
            DrawnBar(
                outcome=bar.outcome,
                css=f"bar bar-{bar.outcome}",
                left=f"{timeline.percent(bar.start_ms):.3f}%",
                width=f"{timeline.width(bar):.3f}%",
                title=_bar_title(lane, bar, start, timeline.end_ms),
                label=bar.label,
            )
            for bar in lane.bars
        ]
        marks = [
            DrawnMark(
                css=f"mark mark-{mark.kind}",
                left=f"{timeline.percent(mark.at_ms):.3f}%",
                title=f"{mark.label} at +{duration(mark.at_ms - start)}",
            )
            for mark in lane.marks
        ]
        drawn.append(DrawnLane(lane, bars, marks))
    return drawn


def _bar_title(lane: Lane, bar: Bar, start: int, end: int) -> str:
    stop = end if bar.end_ms is None else bar.end_ms
    took = duration(stop - bar.start_ms)
    words = {
        "completed": f"completed after {took}",
        "failed": f"failed after {took}",
        "cancelled": f"cancelled after {took}",
        "running": f"running for {took}",
        "fired": f"fired after {took}",
        "waiting": f"waiting ({took} in all)",
        "backoff": f"back-off of {took} before the next attempt",
    }
    text = f"{lane.label}, {bar.label}: {words.get(bar.outcome, bar.outcome)}"
    text += f" (from +{duration(bar.start_ms - start)})"
    return f"{text}. {bar.detail}" if bar.detail else text


def axis(timeline: Timeline) -> list[tuple[str, str]]:
    """Five ticks: ``(left, label)``."""
    return [
        (f"{p}%", "0" if p == 0 else f"+{duration(timeline.span_ms * p // 100)}")
        for p in (0, 25, 50, 75, 100)
    ]


def now() -> datetime:
    return datetime.now(UTC)
