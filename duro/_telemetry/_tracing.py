"""Spans, and the W3C trace context that carries a workflow's trace through stored data.

A workflow is one trace: the client's span (or the turn that starts a sub-orchestration)
travels as a ``traceparent`` string in the start message, is recorded in
``OrchestrationStarted`` and is stamped on everything the workflow sends out, so every turn
and activity, in any process and after any restart, has a parent in that trace. Only
``traceparent`` travels (``tracestate`` does not): duro stores it, it is not a carrier for
vendor state.

Nothing here costs more than a provider lookup while no SDK is installed: OpenTelemetry's own
no-op span still costs a context attach and detach plus the attribute dict, about a fifth of a
no-op activity's overhead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)

from .._status import ErrorInfo

SCOPE = "duro"
"""Instrumentation scope of every span and instrument (the tracer's and the meter's name)."""

# Exact types: a subclass of either is somebody's real provider.
_UNCONFIGURED = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

Attributes = Mapping[str, str | int | bool]

_TRACER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _global_unset(module: object, name: str, from_env: bool) -> bool:
    """True when no global provider is set, at the cost of an attribute read.

    ``get_tracer_provider()`` / ``get_meter_provider()`` look the environment up on every call
    while none is set (a provider may be named there); that lookup was most of the cost of a
    turn's telemetry check with no SDK installed. The API sets its private module global once
    a provider is set (or loaded from the environment, which ``from_env`` says is possible):
    should that name ever go, this answers False and the public call decides.
    """
    return not from_env and getattr(module, name, True) is None


class Tracing:
    """Where spans go: an explicit ``TracerProvider``, or the global one.

    The global provider is looked up on every use, so an SDK installed after the runtime or the
    client was made is picked up. ``tracer()`` is None while spans would go nowhere.
    """

    __slots__ = ("_global", "_pinned", "_tracer")

    def __init__(self, provider: TracerProvider | None = None) -> None:
        # An explicit provider is used as it is: a no-op one means no spans, not the global.
        self._pinned = provider is not None
        self._tracer: Tracer | None = None
        if provider is not None and type(provider) not in _UNCONFIGURED:
            self._tracer = provider.get_tracer(SCOPE)
        self._global: tuple[TracerProvider, Tracer] | None = None

    def tracer(self) -> Tracer | None:
        if self._pinned:
            return self._tracer
        if _global_unset(trace, "_TRACER_PROVIDER", _TRACER_FROM_ENV):
            return None
        provider = trace.get_tracer_provider()
        if type(provider) in _UNCONFIGURED:
            return None
        cached = self._global
        if cached is None or cached[0] is not provider:
            cached = self._global = (provider, provider.get_tracer(SCOPE))
        return cached[1]


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (None for an invalid, non-recording one)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """Parse a stored ``traceparent``; None (never an error) for anything malformed."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if parts[0] == "ff" or not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def parent_context(traceparent: str | None) -> Context:
    """A context whose current span is the stored ``traceparent`` (an empty one, which starts
    a new trace, when there is none).

    Never the caller's own context: a turn or an activity belongs to its workflow's trace,
    not to whatever span happens to be current in the runtime's task.
    """
    span_context = span_context_of(traceparent)
    if span_context is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def link_to(traceparent: str | None) -> Link | None:
    span_context = span_context_of(traceparent)
    return None if span_context is None else Link(span_context)


def fail_span(span: Span, error: ErrorInfo) -> None:
    """Status ERROR plus the ``exception`` event ``record_exception`` would add, from a stored
    error (the exception object itself may be in another process, or long gone)."""
    if not span.is_recording():
        return
    attributes: dict[str, Any] = {
        "exception.type": error.error_type,
        "exception.message": error.message,
        "duro.error.category": error.category.value,
    }
    if error.details:
        attributes["exception.stacktrace"] = error.details
    span.add_event("exception", attributes)
    span.set_status(Status(StatusCode.ERROR, str(error)))


def fail_span_with(span: Span, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
