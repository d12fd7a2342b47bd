"""The ``duro`` meter's instruments (documented one by one in docs/operations.md).

Instruments are made once per ``MeterProvider`` and shared by everything in the process that
measures into it (runtimes, wrapped stores, Cosmos clients). While no provider is installed,
:meth:`Metrics.instruments` returns None and callers skip measuring altogether: no attribute
dict is built, no clock is read.

Observable gauges are read by the SDK's reader, from its own thread and on its own schedule,
so they cannot await the store: each running runtime registers a :class:`GaugeSource` whose
values it keeps current (queue depths are sampled by the runtime, the rest are read live).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.metrics._internal import _ProxyMeterProvider

from ._tracing import SCOPE, _global_unset

_METER_FROM_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ

DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Seconds: turns, activities and store calls take milliseconds; the tail shows trouble."""
WAIT_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
"""Seconds: queue waits and timer lateness are milliseconds when all is well, minutes not."""
EVENT_BUCKETS = (0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
"""Events replayed by one turn: grows with history length when the cache misses."""
RU_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
"""Request units of one Cosmos request: a point read is 1, a batch a few tens."""


class Instruments:
    """Every synchronous instrument of the ``duro`` meter, plus the observable gauges."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(SCOPE)
        self.provider = provider
        self.turns = meter.create_counter(
            "duro.orchestration.turns", "{turn}", "Orchestration turns processed, by outcome."
        )
        self.turn_duration = meter.create_histogram(
            "duro.orchestration.turn.duration",
            "s",
            "Time from taking a locked batch to its commit (or abandon).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.completed = meter.create_counter(
            "duro.orchestration.completed", "{execution}", "Executions that completed."
        )
        self.failed = meter.create_counter(
            "duro.orchestration.failed", "{execution}", "Executions that failed, by category."
        )
        self.replayed_events = meter.create_histogram(
            "duro.orchestration.replayed_events",
            "{event}",
            "History events replayed by a turn that could not go on from the cache.",
            explicit_bucket_boundaries_advisory=EVENT_BUCKETS,
        )
        self.activity_executions = meter.create_counter(
            "duro.activity.executions",
            "{execution}",
            "Activity attempts by how they ended, as their orchestration saw it.",
        )
        self.activity_duration = meter.create_histogram(
            "duro.activity.duration",
            "s",
            "Time an activity function ran.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.activity_queue_wait = meter.create_histogram(
            "duro.activity.queue_wait",
            "s",
            "Time from the turn that scheduled an activity to a worker starting it.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self.timer_lateness = meter.create_histogram(
            "duro.timer.lateness",
            "s",
            "Time from a durable timer's due time to the turn that fires it.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self.poison_messages = meter.create_counter(
            "duro.poison_messages",
            "{message}",
            "Messages and work items delivered more than max_deliveries times.",
        )
        self.store_errors = meter.create_counter(
            "duro.store.errors", "{error}", "Store calls (or batch entries) that failed."
        )
        self.store_duration = meter.create_histogram(
            "duro.store.operation.duration",
            "s",
            "Time of one store call.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.cosmos_request_units = meter.create_counter(
            "duro.cosmos.request_units",
            "{RU}",
            "Request units Cosmos DB charged (x-ms-request-charge), by request kind.",
        )
        self.cosmos_requests = meter.create_counter(
            "duro.cosmos.requests",
            "{request}",
            "HTTP requests sent to Cosmos DB, by kind and status (retries included).",
        )
        meter.create_observable_gauge(
            "duro.queue.depth",
            [self._observe_queues],
            "{message}",
            "Messages waiting in the store's queues, sampled by each runtime.",
        )
        meter.create_observable_gauge(
            "duro.execution_cache.size",
            [self._observe_cache],
            "{execution}",
            "Live executions the runtimes of this process keep between turns.",
        )
        meter.create_observable_gauge(
            "duro.runtime.in_flight",
            [self._observe_in_flight],
            "{task}",
            "Turns and activities being processed right now in this process.",
        )

    def _sources(self) -> list[GaugeSource]:
        with _SOURCES_LOCK:  # runtimes come and go on the event loop's thread; this is the SDK's
            sources = list(_SOURCES)
        return [s for s in sources if s.meter_provider() is self.provider]

    def _observe_queues(self, options: CallbackOptions) -> Iterable[Observation]:
        for source in self._sources():
            depths = source.queue_depths()
            if depths is not None:
                for queue, depth in depths.items():
                    yield Observation(depth, {"duro.queue": queue})

    def _observe_cache(self, options: CallbackOptions) -> Iterable[Observation]:
        sources = self._sources()
        if sources:
            yield Observation(sum(s.cache_size() for s in sources))

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        sources = self._sources()
        if sources:
            yield Observation(sum(s.in_flight_turns() for s in sources), {"duro.work": "turns"})
            yield Observation(
                sum(s.in_flight_activities() for s in sources), {"duro.work": "activities"}
            )


class GaugeSource(Protocol):
    """What a running runtime offers the observable gauges (read from the SDK's thread)."""

    def meter_provider(self) -> MeterProvider | None: ...
    def queue_depths(self) -> dict[str, int] | None: ...
    def cache_size(self) -> int: ...
    def in_flight_turns(self) -> int: ...
    def in_flight_activities(self) -> int: ...


_SOURCES: weakref.WeakSet[GaugeSource] = weakref.WeakSet()
_BY_PROVIDER: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
"""Held while a provider's instruments are made (never while calling back into anything)."""
_SOURCES_LOCK = threading.Lock()
"""Held only to copy or change ``_SOURCES``: the SDK reads it from its own thread."""


def add_gauge_source(source: GaugeSource) -> None:
    with _SOURCES_LOCK:
        _SOURCES.add(source)


def remove_gauge_source(source: GaugeSource) -> None:
    with _SOURCES_LOCK:
        _SOURCES.discard(source)


# Exact types, like the tracer's check: the proxy stands in until an SDK is set (its class is
# private, but it has kept its name since the metrics API became stable).
_UNCONFIGURED: tuple[type[MeterProvider], ...] = (metrics.NoOpMeterProvider, _ProxyMeterProvider)


def instruments_for(provider: MeterProvider) -> Instruments | None:
    """The shared instruments of ``provider`` (None for a no-op or not-yet-set provider)."""
    if type(provider) in _UNCONFIGURED:
        return None
    found = _BY_PROVIDER.get(provider)
    if found is not None:
        return found
    with _LOCK:  # the SDK would refuse a second set of the same instruments
        found = _BY_PROVIDER.get(provider)
        if found is None:
            found = _BY_PROVIDER[provider] = Instruments(provider)
    return found


class Metrics:
    """Where measurements go: an explicit ``MeterProvider``, or the global one, looked up on
    every use so a provider installed later is picked up."""

    __slots__ = ("_explicit",)

    def __init__(self, provider: MeterProvider | None = None) -> None:
        self._explicit = provider

    def provider(self) -> MeterProvider | None:
        """The provider measurements would go to, None while there is none."""
        provider = self._explicit
        if provider is None:
            if _global_unset(metrics_internal, "_METER_PROVIDER", _METER_FROM_ENV):
                return None
            provider = metrics.get_meter_provider()
        return None if type(provider) in _UNCONFIGURED else provider

    def instruments(self) -> Instruments | None:
        provider = self._explicit
        if provider is None:
            if _global_unset(metrics_internal, "_METER_PROVIDER", _METER_FROM_ENV):
                return None
            provider = metrics.get_meter_provider()
        return instruments_for(provider)
