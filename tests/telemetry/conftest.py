"""Fixtures for the telemetry tests: the OpenTelemetry SDK's in-memory exporter and reader,
handed to duro explicitly (the global providers stay unset in the test process), and the
end-to-end store matrix (memory, SQLite and Cosmos; asyncio and trio)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.e2e.conftest import (
    anyio_backend,
    client,
    clock,
    pytest_generate_tests,
    registry,
    store,
)

__all__ = [
    "anyio_backend",
    "client",
    "clock",
    "pytest_generate_tests",
    "registry",
    "store",
]


class Spans:
    """A tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]


class Measurements:
    """A meter provider read on demand: ``points(name)`` lists ``(attributes, value)``."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:  # a histogram point
                            value = (point.count, point.sum)  # type: ignore[attr-defined]
                        found.append((dict(point.attributes or {}), value))
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """Sum of a counter (or of a histogram's counts) over points with ``attributes``."""
        total = 0.0
        for point_attributes, value in self.points(name):
            if all(point_attributes.get(k) == v for k, v in attributes.items()):
                total += value[0] if isinstance(value, tuple) else value
        return total


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()


@pytest.fixture
def measurements() -> Iterator[Measurements]:
    recorded = Measurements()
    yield recorded
    recorded.provider.shutdown()
