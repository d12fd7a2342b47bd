"""The ``duro`` meter: each instrument of docs/operations.md, read with the SDK's in-memory
reader, on every store."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio
import pytest

import duro
from duro._telemetry import Metrics
from duro.history import OrchestrationStarted, TimerCreated
from duro.providers import (
    ActivityWorkItem,
    FetchActivityRequest,
    FetchTurnRequest,
    InstrumentedProvider,
    OrchestrationWorkItem,
    Provider,
    TurnCommit,
)
from duro.testing import VirtualClock
from tests.cosmos.support import CosmosTestEnv
from tests.e2e._support import completed, failed, history_has, runtime, wait_until

from .conftest import Measurements

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.activity
    async def double(ctx: duro.ActivityContext, n: int) -> int:
        return 2 * n

    @registry.activity
    async def explode(ctx: duro.ActivityContext, n: int) -> int:
        raise ValueError(f"cannot take {n}")

    @registry.activity
    async def flaky(ctx: duro.ActivityContext, n: int) -> int:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} timed out")
        return n

    @registry.activity
    async def hangs(ctx: duro.ActivityContext, _: None) -> None:
        await ctx.wait_cancelled()

    @registry.orchestration
    async def child(ctx: duro.OrchestrationContext, n: int) -> int:
        value: int = await ctx.schedule_activity(double, n)
        return value

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, n: int) -> int:
        first: int = await ctx.schedule_activity(double, n)
        return int(await ctx.schedule_sub_orchestration(child, first, instance_id="kid"))

    @registry.orchestration
    async def breaks(ctx: duro.OrchestrationContext, n: int) -> int:
        value: int = await ctx.schedule_activity(explode, n)
        return value

    @registry.orchestration
    async def every_ending(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        ended = []
        retry = duro.RetryPolicy(max_attempts=3, initial_interval=0)
        ended.append(str(await ctx.schedule_activity(flaky, 1, retry=retry)))  # 2 retried
        try:
            await ctx.schedule_activity(explode, 2)  # failed
        except duro.ActivityFailedError:
            ended.append("failed")
        index, _ = await ctx.select(
            ctx.schedule_activity(double, 3), ctx.schedule_activity(hangs)
        )  # one completed, the loser cancelled
        ended.append(str(index))
        once = duro.RetryPolicy(max_attempts=1, attempt_timeout=5)
        try:
            await ctx.schedule_activity(hangs, retry=once)  # timed out
        except duro.ActivityFailedError as exc:
            ended.append(exc.error_type)
        return ended


def _measured_runtime(
    store: Provider,
    registry: duro.Registry,
    clock: VirtualClock,
    measurements: Measurements,
    **overrides: object,
) -> duro.Runtime:
    return runtime(store, registry, clock, meter_provider=measurements.provider, **overrides)


async def test_turns_and_endings_are_counted_by_orchestration_and_outcome(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    measurements: Measurements,
) -> None:
    _register(registry)
    async with _measured_runtime(store, registry, clock, measurements):
        await client.start_orchestration("m-1", "parent", 5)
        await client.start_orchestration("m-2", "breaks", 1)
        assert await completed(client, "m-1") == 20
        await failed(client, "m-2")
    total = measurements.total
    turns = "duro.orchestration.turns"
    # parent: start, its activity's result, the child's result; child: start, result
    assert total(turns, **{"duro.orchestration.name": "parent"}) == 3
    assert (
        total(turns, **{"duro.orchestration.name": "parent", "duro.turn.outcome": "running"}) == 2
    )
    assert (
        total(turns, **{"duro.orchestration.name": "child", "duro.turn.outcome": "completed"}) == 1
    )
    assert total(turns, **{"duro.orchestration.name": "breaks", "duro.turn.outcome": "failed"}) == 1
    assert total("duro.orchestration.turn.duration") == total(turns) == 7
    assert total("duro.orchestration.completed", **{"duro.orchestration.name": "parent"}) == 1
    assert total("duro.orchestration.completed", **{"duro.orchestration.name": "child"}) == 1
    assert total("duro.orchestration.failed") == 1
    assert measurements.points("duro.orchestration.failed") == [
        (
            {
                "duro.orchestration.name": "breaks",
                "duro.error.category": "application",
                "error.type": "ActivityFailedError",
            },
            1,
        )
    ]


async def test_activity_attempts_are_counted_by_how_they_ended(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    measurements: Measurements,
) -> None:
    _register(registry)
    async with _measured_runtime(store, registry, clock, measurements):
        await client.start_orchestration("m-3", "every_ending")
        await history_has(client, "m-3", TimerCreated)  # the last attempt's timeout
        await clock.advance(5)
        assert await completed(client, "m-3") == ["1", "failed", "0", "ActivityTimeout"]

    def executions(name: str, outcome: str) -> float:
        return measurements.total(
            "duro.activity.executions",
            **{"duro.activity.name": name, "duro.activity.outcome": outcome},
        )

    assert (executions("flaky", "retried"), executions("flaky", "completed")) == (2, 1)
    assert executions("explode", "failed") == 1
    assert (executions("double", "completed"), executions("hangs", "cancelled")) == (1, 1)
    assert executions("hangs", "timed_out") == 1
    assert measurements.total("duro.activity.executions") == 7
    # The worker times each run of the function, by how the run ended there.
    duration = "duro.activity.duration"
    assert measurements.total(duration, **{"duro.activity.outcome": "completed"}) == 2
    assert measurements.total(duration, **{"duro.activity.outcome": "failed"}) == 3
    assert measurements.total(duration, **{"duro.activity.outcome": "cancelled"}) == 2
    waits = measurements.points("duro.activity.queue_wait")
    assert sum(count for _, (count, _) in waits) == 7
    assert all(total_wait >= 0 for _, (_, total_wait) in waits)


async def test_a_turn_that_rebuilds_from_history_records_the_events_it_replayed(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    measurements: Measurements,
) -> None:
    _register(registry)

    @registry.orchestration
    async def chain(ctx: duro.OrchestrationContext, n: int) -> int:
        for _ in range(3):
            n = await ctx.schedule_activity("double", n)
        return n

    async with _measured_runtime(store, registry, clock, measurements, execution_cache_size=0):
        await client.start_orchestration("m-4", "chain", 1)
        assert await completed(client, "m-4") == 8
    [(attributes, (count, replayed))] = measurements.points("duro.orchestration.replayed_events")
    assert attributes == {"duro.orchestration.name": "chain"}
    # Three turns after the first replay 2, 4 and 6 events (start + scheduled/completed pairs).
    assert (count, replayed) == (3, 2 + 4 + 6)


async def test_timer_lateness_is_measured_from_the_due_time(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    measurements: Measurements,
) -> None:
    @registry.orchestration
    async def sleeper(ctx: duro.OrchestrationContext, _: None) -> str:
        await ctx.schedule_timer(60)
        return "woke"

    async with _measured_runtime(store, registry, clock, measurements):
        await client.start_orchestration("m-5", sleeper)
        await history_has(client, "m-5", TimerCreated)
        await clock.advance(75)  # due after 60 s; the clock jumps straight to 75 s
        assert await completed(client, "m-5") == "woke"
    [(attributes, (count, lateness))] = measurements.points("duro.timer.lateness")
    assert attributes == {"duro.orchestration.name": "sleeper"}
    assert count == 1
    assert lateness == pytest.approx(15, abs=1)


async def test_gauges_show_queue_depths_cache_size_and_work_in_flight(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    measurements: Measurements,
) -> None:
    release = anyio.Event()

    @registry.activity
    async def blocked(ctx: duro.ActivityContext, _: None) -> None:
        await release.wait()

    @registry.orchestration
    async def holds(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(blocked)
        await ctx.schedule_timer(3600)

    def gauge(name: str) -> dict[str, float]:
        return {
            ",".join(f"{v}" for v in attributes.values()): value
            for attributes, value in measurements.points(name)
        }

    async with _measured_runtime(
        store, registry, clock, measurements, queue_depth_interval=0.01
    ) as rt:
        await client.start_orchestration("m-6", holds)
        await wait_until(
            lambda: gauge("duro.runtime.in_flight") == {"turns": 0, "activities": 1},
            what="the activity running, the turn that scheduled it done",
        )
        assert rt.in_flight == 1
        await wait_until(lambda: "worker" in gauge("duro.queue.depth"), what="a depth sample")
        assert gauge("duro.execution_cache.size") == {"": 1}
        assert set(gauge("duro.queue.depth")) == {"orchestrator", "timers", "worker", "locked"}
        release.set()
        await history_has(client, "m-6", TimerCreated)
        await wait_until(lambda: gauge("duro.queue.depth").get("timers") == 1, what="the timer")
    # A stopped runtime is no longer observed.
    assert gauge("duro.runtime.in_flight") == {}


class _PoisonedStore(duro.InMemoryProvider):
    """Hands every activity and turn out as if it had been delivered 99 times."""

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        items = await super().fetch_activities(request)
        return [dataclasses.replace(item, delivery_count=99) for item in items]

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        items = await super().fetch_turns(request)
        return [
            dataclasses.replace(item, delivery_count=99)
            if item.instance_id == "poisoned-turn"
            else item
            for item in items
        ]


async def test_poison_messages_are_counted_by_queue(
    registry: duro.Registry, measurements: Measurements
) -> None:
    _register(registry)
    store = _PoisonedStore()
    client = duro.Client(store)
    async with _measured_runtime(store, registry, VirtualClock(), measurements):
        await client.start_orchestration("poisoned-activity", "child", 1)
        await client.start_orchestration("poisoned-turn", "child", 1)
        await failed(client, "poisoned-activity")
        await failed(client, "poisoned-turn")
    assert measurements.total("duro.poison_messages", **{"duro.queue": "worker"}) == 1
    assert measurements.total("duro.poison_messages", **{"duro.queue": "orchestrator"}) == 1


class _FlakyCommits(duro.InMemoryProvider):
    """The first batch of turn commits fails as a whole, retryably; one commit of the second
    is refused (a lost lock)."""

    fetches_with_commits = False  # every batch goes through commit_turns
    calls = 0

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[duro.ProviderError | None]:
        self.calls += 1
        if self.calls == 1:
            raise duro.StoreBusyError("commit_turns", "busy")  # type: ignore[call-arg]
        return await super().commit_turns(commits)


async def test_store_calls_are_timed_and_failures_counted_by_operation(
    registry: duro.Registry, measurements: Measurements
) -> None:
    _register(registry)
    store = _FlakyCommits()
    async with _measured_runtime(store, registry, VirtualClock(), measurements):
        client = duro.Client(store)
        await client.start_orchestration("m-7", "child", 1)
        assert await completed(client, "m-7") == 2
    errors = measurements.points("duro.store.errors")
    assert errors == [
        (
            {
                "duro.store.operation": "commit_turns",
                "duro.store.retryable": True,
                "error.type": "StoreBusyError",
            },
            1,
        )
    ]
    timed = {
        a["duro.store.operation"] for a, _ in measurements.points("duro.store.operation.duration")
    }
    assert {"commit_turns", "open"} <= timed
    assert all(
        a["duro.store.name"] == "memory"
        for a, _ in measurements.points("duro.store.operation.duration")
    )


async def test_a_wrapped_store_counts_the_errors_a_batch_returns(
    measurements: Measurements,
) -> None:
    store = InstrumentedProvider(duro.InMemoryProvider(), meter_provider=measurements.provider)
    [error] = await store.commit_turns(
        [TurnCommit(lock_token="nobody-holds-this", changes=_empty_changes())]
    )
    assert isinstance(error, duro.LockLostError)
    assert measurements.points("duro.store.errors") == [
        (
            {
                "duro.store.operation": "commit_turns",
                "duro.store.retryable": False,
                "error.type": "LockLostError",
            },
            1,
        )
    ]


def _empty_changes() -> duro.providers.TurnChanges:
    return duro.providers.TurnChanges(instance_id="x", execution_id=1, name="n", version="1")


async def test_without_a_meter_or_tracer_provider_no_telemetry_object_is_made(
    registry: duro.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duro._runtime._orchestrator as orchestrator
    import duro._runtime._worker as worker

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("telemetry work without a provider")

    monkeypatch.setattr(orchestrator, "ObservedTurn", refuse)
    monkeypatch.setattr(worker, "ObservedActivity", refuse)
    monkeypatch.setattr(InstrumentedProvider, "_measure", refuse)
    assert Metrics().instruments() is None  # the test process installs no global provider
    _register(registry)
    store = duro.InMemoryProvider()
    async with runtime(store, registry, VirtualClock()):
        client = duro.Client(store)
        await client.start_orchestration("m-8", "parent", 1)
        assert await completed(client, "m-8") == 4
    history = await client.get_history("m-8")
    started = history[0]
    assert isinstance(started, OrchestrationStarted) and started.traceparent is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cosmos_requests_and_request_units_are_counted_by_kind_and_status(
    registry: duro.Registry, cosmos_env: CosmosTestEnv, measurements: Measurements
) -> None:
    from duro_cosmos import CosmosConfig, CosmosProvider

    _register(registry)
    config = CosmosConfig(cosmos_env.url, cosmos_env.key, cosmos_env.database, cosmos_env.container)
    store = CosmosProvider(
        config, transport=cosmos_env.transport, meter_provider=measurements.provider
    )
    async with store:
        async with runtime(store, registry):
            client = duro.Client(store)
            await client.start_orchestration("m-9", "child", 4)
            assert await completed(client, "m-9") == 8
        stats = store.statistics()  # closing the store resets its counters
        requests = measurements.points("duro.cosmos.requests")
        charged = measurements.total("duro.cosmos.request_units")
    assert sum(value for _, value in requests) == stats.total > 0
    by_kind: dict[str, float] = {}
    for attributes, value in requests:
        kind = attributes["duro.cosmos.request.kind"]
        by_kind[kind] = by_kind.get(kind, 0) + value
        assert 200 <= attributes["http.response.status_code"] < 500
    assert by_kind == dict(stats.by_kind)
    assert {"batch", "query", "read"} <= set(by_kind)
    # The compat layer charges every response as Cosmos would; the metric adds them all up.
    assert charged == pytest.approx(stats.request_charge) and charged > 0
