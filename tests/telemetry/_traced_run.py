"""Runs one orchestration with a recording OpenTelemetry provider; prints the spans as JSON.

A separate process: OpenTelemetry's global provider can be set only once per process, and
the rest of the suite runs with none installed (the runtime's fast path).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import anyio
from opentelemetry import trace

import duro

recorded: list[dict[str, Any]] = []


class RecordingTracer(trace.NoOpTracer):
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, *args: Any, attributes: Any = None, **kwargs: Any
    ) -> Iterator[trace.Span]:
        recorded.append({"name": name, "attributes": dict(attributes or {})})
        yield trace.INVALID_SPAN


class RecordingProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return RecordingTracer()


registry = duro.Registry()


@registry.activity
async def double(ctx: duro.ActivityContext, x: int) -> int:
    return 2 * x


@registry.orchestration
async def doubler(ctx: duro.OrchestrationContext, x: int) -> int:
    return await ctx.schedule_activity(double, x)


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):
        # Installed after the runtime started: the runtime must still pick it up.
        trace.set_tracer_provider(RecordingProvider())
        client = duro.Client(store, registry=registry)
        await client.start_orchestration("traced-1", doubler, 21)
        status = await client.wait_for_orchestration("traced-1", timeout=10)
        assert status.output == 42, status
    print(json.dumps(recorded))


if __name__ == "__main__":
    anyio.run(main)
