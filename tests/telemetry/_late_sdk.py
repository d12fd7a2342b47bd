"""Runs one workflow, installing OpenTelemetry's *global* providers only after the runtime
started; prints the names of the spans and metrics recorded, as JSON.

A separate process: the global providers can be set once per process, and the rest of the
suite runs with none installed (the runtime's fast path).
"""

from __future__ import annotations

import json

import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import duro

registry = duro.Registry()


@registry.activity
async def double(ctx: duro.ActivityContext, x: int) -> int:
    return 2 * x


@registry.orchestration
async def doubler(ctx: duro.OrchestrationContext, x: int) -> int:
    value: int = await ctx.schedule_activity(double, x)
    return value


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry, duro.RuntimeOptions(queue_depth_interval=0.01)):
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        client = duro.Client(store)
        await client.start_orchestration("late-1", doubler, 21)
        status = await client.wait_for_orchestration("late-1", timeout=10)
        assert status.output == 42, status
        await anyio.sleep(0.1)  # a queue-depth sample
        data = reader.get_metrics_data()
        names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    spans = [s.name for s in exporter.get_finished_spans()]
    print(json.dumps({"spans": spans, "metrics": sorted(names)}))


if __name__ == "__main__":
    anyio.run(main)
