"""OpenTelemetry spans for turns and activities (no-ops unless an SDK is configured)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

from opentelemetry import trace

tracer = trace.get_tracer("duro")

Attributes = dict[str, str | int]

# Exact types: a subclass of either is somebody's real provider.
_UNCONFIGURED = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_NO_SPAN = contextlib.nullcontext()


def span(name: str, attributes: Callable[[], Attributes]) -> AbstractContextManager[object]:
    """A span around a turn or an activity, or nothing at all while no SDK is installed.

    Without an SDK, OpenTelemetry's own no-op span still costs a context attach and detach
    plus the attribute dict, about a fifth of a no-op activity's overhead. The provider is
    looked up on every call, so an SDK installed after the runtime started is picked up.
    """
    if type(trace.get_tracer_provider()) in _UNCONFIGURED:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes())


def turn_attributes(instance_id: str, execution_id: int, messages: int) -> Attributes:
    return {
        "duro.instance_id": instance_id,
        "duro.execution_id": execution_id,
        "duro.messages": messages,
    }


def activity_attributes(instance_id: str, name: str, attempt: int) -> Attributes:
    return {"duro.instance_id": instance_id, "duro.activity": name, "duro.attempt": attempt}
