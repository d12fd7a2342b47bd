"""A child process of the cross-process trace test: one runtime on a shared SQLite file.

    python -m tests.telemetry._process --db PATH --spans PATH --role orchestrations|activities

``orchestrations`` runs turns only, ``activities`` runs activities only, so one workflow's
work is split between processes. Each installs OpenTelemetry's *global* tracer provider,
after its runtime has started (it must be picked up then), and appends every finished span
to ``--spans`` as one JSON line. SIGTERM stops the runtime gracefully and flushes the spans.
It prints ``ready`` once dispatching.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Sequence
from pathlib import Path

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import duro

registry = duro.Registry()


@registry.activity
async def double(ctx: duro.ActivityContext, n: int) -> int:
    return 2 * n


@registry.orchestration
async def child(ctx: duro.OrchestrationContext, n: int) -> int:
    value: int = await ctx.schedule_activity(double, n)
    return value


@registry.orchestration
async def workflow(ctx: duro.OrchestrationContext, n: int) -> int:
    first: int = await ctx.schedule_activity(double, n)
    second: int = await ctx.schedule_sub_orchestration(
        child, first, instance_id=f"{ctx.instance_id}-child"
    )
    ctx.set_custom_status("waiting")
    extra: int = await ctx.wait_for_event("go")
    last: int = await ctx.schedule_activity(double, second + extra)
    return last


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a file: what the test needs to check links."""

    def __init__(self, path: Path, process: str) -> None:
        self._path = path
        self._process = process

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._path.open("a") as out:
            for span in spans:
                out.write(json.dumps(describe(span, self._process)) + "\n")
        return SpanExportResult.SUCCESS


def describe(span: ReadableSpan, process: str) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "process": process,
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


async def main(db: Path, spans: Path, role: str, process: str) -> None:
    store = duro.SqliteProvider(db)
    options = duro.RuntimeOptions(
        orchestration_concurrency=4 if role == "orchestrations" else 0,
        activity_concurrency=4 if role == "activities" else 0,
        idle_backoff_max=0.05,
        shutdown_grace_period=5,
        max_sessions=0,
    )
    async with store, duro.Runtime(store, registry, options):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans, process)))
        trace.set_tracer_provider(provider)  # after the start: the runtime must pick it up
        print("ready", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
    provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--spans", type=Path, required=True)
    parser.add_argument("--role", choices=["orchestrations", "activities"], required=True)
    parser.add_argument("--name", required=True, help="how this process is named in --spans")
    args = parser.parse_args()
    anyio.run(main, args.db, args.spans, args.role, args.name)
