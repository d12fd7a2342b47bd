"""One workflow is one trace: parent links and trace ids, checked with the SDK's in-memory
exporter on every store (the cross-process case is in ``test_cross_process.py``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import duro
from duro.history import OrchestrationStarted
from duro.providers import Provider
from duro.testing import VirtualClock
from tests.e2e._support import completed, failed, history_has, runtime

from .conftest import Spans

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.activity
    async def double(ctx: duro.ActivityContext, n: int) -> int:
        return 2 * n

    @registry.activity
    async def explode(ctx: duro.ActivityContext, n: int) -> int:
        raise ValueError(f"cannot take {n}")

    @registry.orchestration
    async def child(ctx: duro.OrchestrationContext, n: int) -> int:
        value: int = await ctx.schedule_activity(double, n)
        return value

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, n: int) -> int:
        first: int = await ctx.schedule_activity(double, n)
        second: int = await ctx.schedule_sub_orchestration(child, first, instance_id="kid")
        return second

    @registry.orchestration
    async def breaks(ctx: duro.OrchestrationContext, n: int) -> int:
        value: int = await ctx.schedule_activity(explode, n)
        return value

    @registry.orchestration
    async def waits(ctx: duro.OrchestrationContext, n: int) -> int:
        extra: int = await ctx.wait_for_event("more")
        return n + extra


def _tracing_runtime(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans, **overrides: Any
) -> duro.Runtime:
    return runtime(store, registry, clock, tracer_provider=spans.provider, **overrides)


def _by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def _parent_of(span: ReadableSpan, index: dict[int, ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return index[span.parent.span_id]


async def test_a_workflow_with_a_sub_orchestration_is_one_trace_under_the_callers_span(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans
) -> None:
    _register(registry)
    client = duro.Client(store, registry=registry, tracer_provider=spans.provider)
    tracer = spans.provider.get_tracer("caller")
    async with _tracing_runtime(store, registry, clock, spans):
        with tracer.start_as_current_span("handle request"):
            await client.start_orchestration("wf-1", "parent", 5)
        assert await completed(client, "wf-1") == 20
    finished = spans.finished()
    index = _by_id(finished)
    [request] = spans.named("handle request")
    assert {s.context.trace_id for s in finished} == {request.context.trace_id}

    [start] = spans.named("duro.start_orchestration")
    assert start.kind is SpanKind.PRODUCER
    assert _parent_of(start, index) is request
    turns = spans.named("duro.turn")
    parent_turns = [t for t in turns if t.attributes["duro.instance_id"] == "wf-1"]
    child_turns = [t for t in turns if t.attributes["duro.instance_id"] == "kid"]
    # start, activity result, child result / start, activity result
    assert (len(parent_turns), len(child_turns)) == (3, 2)
    assert all(_parent_of(t, index) is start for t in parent_turns)

    # The sub-orchestration's turns hang under the parent turn that scheduled it.
    scheduling_turn = _parent_of(child_turns[0], index)
    assert scheduling_turn in parent_turns
    assert all(_parent_of(t, index) is scheduling_turn for t in child_turns)

    # Each activity is a child of the turn that scheduled it, in its workflow.
    activities = spans.named("duro.activity")
    assert len(activities) == 2
    for activity in activities:
        turn = _parent_of(activity, index)
        assert turn.name == "duro.turn"
        assert turn.attributes["duro.instance_id"] == activity.attributes["duro.instance_id"]

    # One span per execution covers it from start to end.
    runs = {s.attributes["duro.instance_id"]: s for s in spans.named("duro.orchestration")}
    assert set(runs) == {"wf-1", "kid"}
    assert _parent_of(runs["wf-1"], index) is start
    assert _parent_of(runs["kid"], index) is scheduling_turn
    assert runs["wf-1"].attributes["duro.orchestration.outcome"] == "completed"
    assert runs["wf-1"].status.status_code is StatusCode.UNSET
    # Only the caller's own span is a root.
    assert [s.name for s in finished if s.parent is None] == ["handle request"]


async def test_a_start_without_a_current_span_begins_one_trace_the_workflow_shares(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans
) -> None:
    _register(registry)
    client = duro.Client(store, registry=registry, tracer_provider=spans.provider)
    async with _tracing_runtime(store, registry, clock, spans):
        await client.start_orchestration("wf-2", "parent", 1)
        await completed(client, "wf-2")
    finished = spans.finished()
    [start] = spans.named("duro.start_orchestration")
    assert start.parent is None
    assert {s.context.trace_id for s in finished} == {start.context.trace_id}
    assert [s.name for s in finished if s.parent is None] == ["duro.start_orchestration"]


async def test_a_workflow_started_by_an_untraced_client_shares_its_first_turns_trace(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans
) -> None:
    _register(registry)
    client = duro.Client(store, registry=registry)  # no tracer provider: no client span
    async with _tracing_runtime(store, registry, clock, spans):
        await client.start_orchestration("wf-3", "parent", 1)
        await completed(client, "wf-3")
    finished = spans.finished()
    roots = [s for s in finished if s.parent is None]
    assert [(s.name, s.attributes["duro.instance_id"]) for s in roots] == [("duro.turn", "wf-3")]
    assert {s.context.trace_id for s in finished} == {roots[0].context.trace_id}


async def test_failed_activity_turn_and_orchestration_have_status_error_with_the_exception(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans
) -> None:
    _register(registry)
    client = duro.Client(store, registry=registry, tracer_provider=spans.provider)
    async with _tracing_runtime(store, registry, clock, spans):
        await client.start_orchestration("wf-4", "breaks", 7)
        error = await failed(client, "wf-4")
    assert error.error_type == "ActivityFailedError"

    [activity] = spans.named("duro.activity")
    assert activity.status.status_code is StatusCode.ERROR
    [event] = [e for e in activity.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "cannot take 7"
    assert "Traceback" in str(event.attributes["exception.stacktrace"])
    assert dict(activity.attributes) == {
        "duro.instance_id": "wf-4",
        "duro.execution_id": 1,
        "duro.activity.name": "explode",
        "duro.activity.attempt": 1,
        "duro.orchestration.name": "breaks",
        "duro.orchestration.version": "1.0.0",
        "duro.activity.outcome": "failed",
    }

    last_turn = spans.named("duro.turn")[-1]
    assert last_turn.status.status_code is StatusCode.ERROR
    assert last_turn.attributes["duro.turn.outcome"] == "failed"
    assert [e.attributes["exception.type"] for e in last_turn.events] == ["ActivityFailedError"]
    [run] = spans.named("duro.orchestration")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["duro.orchestration.outcome"] == "failed"
    assert [e.name for e in run.events] == ["exception"]
    first_turn = spans.named("duro.turn")[0]
    assert first_turn.status.status_code is StatusCode.UNSET
    assert {
        k: first_turn.attributes[k]
        for k in ("duro.instance_id", "duro.execution_id", "duro.orchestration.name")
    } == {"duro.instance_id": "wf-4", "duro.execution_id": 1, "duro.orchestration.name": "breaks"}


async def test_an_event_raised_from_another_trace_is_linked_not_adopted(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans
) -> None:
    _register(registry)
    client = duro.Client(store, registry=registry, tracer_provider=spans.provider)
    async with _tracing_runtime(store, registry, clock, spans):
        await client.start_orchestration("wf-5", "waits", 1)
        await history_has(client, "wf-5", OrchestrationStarted)
        await client.raise_event("wf-5", "more", 2)  # a separate trace: no current span
        assert await completed(client, "wf-5") == 3
    [start] = spans.named("duro.start_orchestration")
    [raised] = spans.named("duro.raise_event")
    assert raised.context.trace_id != start.context.trace_id
    handling = [t for t in spans.named("duro.turn") if t.links]
    assert len(handling) == 1
    [link] = handling[0].links
    assert link.context.span_id == raised.context.span_id
    assert handling[0].context.trace_id == start.context.trace_id
    assert handling[0].parent is not None
    assert handling[0].parent.span_id == start.context.span_id


async def test_replaying_history_emits_no_span_again(
    store: Provider, registry: duro.Registry, clock: VirtualClock, spans: Spans
) -> None:
    _register(registry)

    @registry.orchestration
    async def long_chain(ctx: duro.OrchestrationContext, n: int) -> int:
        for _ in range(4):
            n = await ctx.schedule_activity("double", n)
        return n

    client = duro.Client(store, registry=registry, tracer_provider=spans.provider)
    # No cache: every turn rebuilds the execution by replaying its whole history.
    async with _tracing_runtime(store, registry, clock, spans, execution_cache_size=0) as rt:
        await client.start_orchestration("wf-6", "long_chain", 1)
        assert await completed(client, "wf-6") == 16
    turns_committed = rt.turns_committed  # after shutdown: the last commit is counted
    names = Counter(s.name for s in spans.finished())
    assert names["duro.activity"] == 4
    assert names["duro.turn"] == turns_committed == 5
    assert names["duro.orchestration"] == 1
