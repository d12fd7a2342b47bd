"""OpenTelemetry for duro: spans and the trace context stored with a workflow, and the ``duro``
meter's instruments (``duro.providers.InstrumentedProvider`` uses them to measure stores).

Only the OpenTelemetry API is used: without an SDK nothing is recorded, and every caller
checks ``Tracing.tracer()`` / ``Metrics.instruments()`` first and skips the work entirely.
"""

from __future__ import annotations

from ._metrics import GaugeSource, Instruments, Metrics, add_gauge_source, remove_gauge_source
from ._tracing import (
    SCOPE,
    Tracing,
    fail_span,
    fail_span_with,
    link_to,
    parent_context,
    span_context_of,
    traceparent_of,
)

__all__ = [
    "SCOPE",
    "GaugeSource",
    "Instruments",
    "Metrics",
    "Tracing",
    "add_gauge_source",
    "fail_span",
    "fail_span_with",
    "link_to",
    "parent_context",
    "remove_gauge_source",
    "span_context_of",
    "traceparent_of",
]
