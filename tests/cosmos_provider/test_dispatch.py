"""How CosmosProvider finds and shares out work: membership, doorbells, sweeps, fail-over.

In one process, with several providers on one container through the compat transport (each
provider is a member of its own), on the system clock: membership liveness is real time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec
import pytest

import duro
from duro._clock import Clock
from duro.providers import ActivityResultMessage, ScheduledMessage
from duro.providers._types import (
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    TagFilter,
)
from duro.testing._contract._fixtures import activity_task
from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy
from duro_cosmos._documents import SLOTS_PARTITION, dump, slot_of
from duro_cosmos._membership import HANDOVER_GRACE_S, MEMBER_TTL_S, READ_S, assign
from duro_cosmos._model import work_doc
from duro_cosmos._rest import BatchOperation
from duro_cosmos._sweep import IDLE_SWEEP_S, SWEEP_PAGE
from tests.cosmos.support import CosmosTestEnv

pytestmark = pytest.mark.anyio

FAST_RETRY = HttpRetryPolicy(base_delay=0.001, max_delay=0.05)
LIVENESS = 30.0
"""Seconds a test waits for something that happens within a few seconds when it works (the
test fails instead of hanging; this is no performance target)."""

registry = duro.Registry()


@registry.orchestration
async def echo(ctx: duro.OrchestrationContext, value: int) -> int:
    return value


def make(
    env: CosmosTestEnv,
    owner_id: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
) -> CosmosProvider:
    config = CosmosConfig(env.url, env.key, env.database, env.container)
    return CosmosProvider(
        config, transport=transport or env.transport, owner_id=owner_id, retry=FAST_RETRY,
        clock=clock,
    )  # fmt: skip


@asynccontextmanager
async def runtime(store: CosmosProvider, worker_id: str) -> AsyncIterator[duro.Runtime]:
    options = duro.RuntimeOptions(worker_id=worker_id, poll_timeout=0.2, max_sessions=0)
    async with duro.Runtime(store, registry, options) as rt:
        yield rt


async def eventually(what: str, check: Any) -> None:
    with anyio.fail_after(LIVENESS):
        while not await check():  # noqa: ASYNC110 - the state is in the store: poll it
            await anyio.sleep(0.05)


async def member_ids(store: CosmosProvider) -> set[str]:
    rows = await store._ctx.store.query_partition(  # the membership partition, read directly
        SLOTS_PARTITION, "SELECT c.ownerId FROM c WHERE c.instanceId = @pk AND c.type = 'member'"
    )
    return {row["ownerId"] for row in rows}


def instance_in(slots: frozenset[int], prefix: str) -> str:
    return next(f"{prefix}-{n}" for n in range(10_000) if slot_of(f"{prefix}-{n}") in slots)


async def test_a_stopped_runtime_leaves_the_membership_though_its_provider_stays_open(
    cosmos_env: CosmosTestEnv,
) -> None:
    async with (
        make(cosmos_env, "a") as store_a,
        make(cosmos_env, "b") as store_b,
        runtime(store_b, "b"),
    ):
        async with runtime(store_a, "a"):
            await eventually("a and b split the slots", lambda: _both_share(store_a, store_b))
            slots_of_a = await store_a.owned_slots()
            assert slots_of_a
        # The runtime stopped, the provider is still open: its membership ended with it.
        assert "a" not in await member_ids(store_b)
        await eventually("b owns every slot", lambda: _alone(store_b))
        client = duro.Client(store_a)  # a client on the open provider still works
        instance_id = instance_in(slots_of_a, "left")
        await client.start_orchestration(instance_id, echo, 7)
        status = await client.wait_for_orchestration(instance_id, timeout=LIVENESS)
        assert status.output == 7


async def test_a_member_that_stops_heartbeating_is_gone_after_the_liveness_window(
    cosmos_env: CosmosTestEnv,
) -> None:
    # Like a SIGKILL: the member document stays, it just stops changing.
    async with make(cosmos_env, "a") as store_a, make(cosmos_env, "b") as store_b:
        await store_a.runtime_started("a")
        async with runtime(store_b, "b"):
            await eventually("a and b split the slots", lambda: _both_share(store_a, store_b))
            silenced = time.monotonic()
            # a no longer ticks: nothing calls it (its runtime is gone, not stopped)
            await eventually("b owns every slot", lambda: _alone(store_b))
            took = time.monotonic() - silenced
            print(f"b took a's slots {took:.1f} s after a's last heartbeat")
            # Judged by b's own clock seeing a's document stop changing, never by a timestamp.
            assert took >= MEMBER_TTL_S - READ_S
            assert "a" not in await member_ids(store_b)  # b cleared a's stale document


async def test_a_client_start_rings_a_doorbell_that_the_owning_runtime_answers(
    cosmos_env: CosmosTestEnv,
) -> None:
    async with make(cosmos_env, "runtime") as store, make(cosmos_env, "client") as client_store:
        async with runtime(store, "runtime"):
            await eventually("the runtime joined", lambda: _alone(store))
            client = duro.Client(client_store)  # another provider: it knows no index
            await client.start_orchestration("rung", echo, 3)
            status = await client.wait_for_orchestration("rung", timeout=LIVENESS)
            assert status.output == 3
        bells = await client_store._ctx.store.query_partition(
            SLOTS_PARTITION, "SELECT c.id FROM c WHERE c.instanceId = @pk AND c.type = 'bell'"
        )
        assert bells, "the client's start rang no doorbell"


class _QueryRecorder(httpx.AsyncBaseTransport):
    """Passes requests on and keeps the documents every query response returned."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.pages: list[tuple[dict[str, str], list[dict[str, Any]]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.headers.get("x-ms-documentdb-isquery") != "True":
            return response
        body = await response.aread()
        documents = msgspec.json.decode(body).get("Documents", []) if body else []
        self.pages.append((dict(request.headers), documents))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )


async def test_sweeps_under_a_backlog_of_thousands_return_bounded_pages_without_payloads(
    cosmos_env: CosmosTestEnv,
) -> None:
    # 2,000 work items written straight into 20 partitions (as other processes would have).
    async with make(cosmos_env, "writer") as writer:
        await writer.open()
        for i in range(20):
            instance_id = f"backlog-{i:02}"
            docs = [
                work_doc(activity_task(instance_id, seq), f"w:backlog:{i}:{seq}", 1_000 + seq)
                for seq in range(1, 101)
            ]
            await writer._ctx.store.batch(
                instance_id, [BatchOperation.create(dump(d)) for d in docs]
            )
    recorder = _QueryRecorder(cosmos_env.transport)
    async with make(cosmos_env, "reader", transport=recorder) as reader:
        request = FetchActivityRequest(lock_timeout=30, max_items=5)
        items = await reader.fetch_activities(request)

    assert len(items) == 5
    # Oldest first: every partition's item 1 became visible at 1,001.
    assert {item.task.seq for item in items} == {1}
    sweeps = [
        documents
        for headers, documents in recorder.pages
        if "x-ms-documentdb-partitionkeyrangeid" in headers
    ]
    assert sweeps, "no sweep ran"
    assert all(len(documents) <= SWEEP_PAGE for documents in sweeps)
    assert all("task" not in d and "msg" not in d for docs in sweeps for d in docs)
    assert max(len(docs) for docs in sweeps) == SWEEP_PAGE  # the backlog is larger


async def _both_share(a: CosmosProvider, b: CosmosProvider) -> bool:
    slots_a, slots_b = await a.owned_slots(), await b.owned_slots()
    return bool(slots_a) and bool(slots_b) and not (slots_a & slots_b)  # type: ignore[operator]


async def _alone(store: CosmosProvider) -> bool:
    return await store.owned_slots() is None


class SkewedClock(duro.SystemClock):
    """The system clock, ``offset_ms`` off, as on a host whose time is not synchronised."""

    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms


chain_registry = duro.Registry()


@chain_registry.activity
async def bump(ctx: duro.ActivityContext, n: int) -> int:
    return n + 1


@chain_registry.orchestration
async def chain(ctx: duro.OrchestrationContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.schedule_activity(bump, n)
    await ctx.schedule_timer(0.2)
    return n


async def test_runtimes_whose_clocks_disagree_by_seconds_share_the_work_correctly(
    cosmos_env: CosmosTestEnv,
) -> None:
    # Two members 8 s apart: membership liveness never compares their clocks, and a live
    # member's lock holds for MAX_CLOCK_SKEW_MS past its expiry by the other's clock.
    ahead, behind = SkewedClock(4_000), SkewedClock(-4_000)
    options = {"poll_timeout": 0.2, "max_sessions": 0, "orchestration_lock_timeout": 2.0}
    ids = [f"skew-{n}" for n in range(12)]
    async with (
        make(cosmos_env, "ahead", clock=ahead) as store_ahead,
        make(cosmos_env, "behind", clock=behind) as store_behind,
        duro.Runtime(
            store_ahead, chain_registry, duro.RuntimeOptions(worker_id="ahead", **options),
            clock=ahead,
        ) as rt_ahead,
        duro.Runtime(
            store_behind, chain_registry, duro.RuntimeOptions(worker_id="behind", **options),
            clock=behind,
        ) as rt_behind,
    ):  # fmt: skip
        await eventually(
            "the members split the slots", lambda: _both_share(store_ahead, store_behind)
        )
        client = duro.Client(store_behind)
        for n, instance_id in enumerate(ids):
            await client.start_orchestration(instance_id, chain, n)
        for n, instance_id in enumerate(ids):
            status = await client.wait_for_orchestration(instance_id, timeout=LIVENESS)
            assert status.output == n + 3, instance_id
        # Neither starved: both still own a share, and both ran turns.
        assert await store_ahead.owned_slots() and await store_behind.owned_slots()
        assert rt_ahead.turns_committed > 0 and rt_behind.turns_committed > 0
        for instance_id in ids:
            events = await client.get_history(instance_id)
            event_ids = [e.event_id for e in events]
            assert event_ids == list(range(1, len(event_ids) + 1)), instance_id


# -- a restarted process under the same owner id (found by the soak test) -----------------------


async def test_a_restarted_member_takes_its_crashed_predecessors_activity_locks_at_once(
    cosmos_env: CosmosTestEnv,
) -> None:
    # An item written before the member joined is not fresh: taking it writes the lock.
    async with make(cosmos_env, "writer") as writer:
        await writer.open()
        doc = work_doc(activity_task("restart-1", 1), "w:restart-1:1", 1_000)
        await writer._ctx.store.batch("restart-1", [BatchOperation.create(dump(doc))])
    lock_timeout = 60.0
    async with make(cosmos_env, "w") as before, make(cosmos_env, "w") as after:
        await before.runtime_started("w")
        [taken] = await before.fetch_activities(FetchActivityRequest(lock_timeout=lock_timeout))
        # SIGKILL: `before` never renews, completes or leaves. Its successor, the same worker
        # id in a new process, must not wait a minute for the lock to expire, nor for an idle
        # sweep to notice that it did.
        await after.runtime_started("w")
        started = time.monotonic()
        request = FetchActivityRequest(lock_timeout=lock_timeout, poll_timeout=LIVENESS)
        [again] = await after.fetch_activities(request)
        took = time.monotonic() - started
        assert again.task.seq == taken.task.seq
        assert again.delivery_count == 2
        assert took < 2 * READ_S, f"the restarted member waited {took:.1f} s for its own lock"
        # The predecessor's token no longer completes: the take-over fenced it.
        with pytest.raises(duro.LockLostError):
            await before.complete_activity(_completion(taken))
        # The successor's lock holds against itself: a second fetch finds nothing.
        assert await after.fetch_activities(FetchActivityRequest(lock_timeout=1.0)) == []
        await after.complete_activity(_completion(again))


def _completion(item: ActivityWorkItem) -> ActivityCommit:
    task = item.task
    message = ActivityResultMessage(
        instance_id=task.instance_id, execution_id=task.execution_id, seq=task.seq
    )
    return ActivityCommit(lock_token=item.lock_token, result=ScheduledMessage(message=message))


# -- a slot handed over from a live member (found by the soak test) ------------------------------


async def test_a_joining_member_takes_waiting_work_as_soon_as_the_hand_over_grace_ends(
    cosmos_env: CosmosTestEnv,
) -> None:
    # A member that joins while others live (a new worker, or a restarted one under its old
    # id) takes its slots after HANDOVER_GRACE_S. Work already waiting there must be taken
    # when that grace ends, not at the next idle sweep, a quarter of a minute later, when no
    # doorbell happens to ring meanwhile.
    instance_id = instance_in(assign(["a", "w"], "w"), "handed")
    doc = work_doc(activity_task(instance_id, 1), f"w:{instance_id}:1", 1_000)
    nothing = FetchActivityRequest(lock_timeout=60.0, tag_filter=TagFilter(include_untagged=False))
    async with make(cosmos_env, "a") as a, make(cosmos_env, "w") as w:
        await a.runtime_started("a")
        await a.fetch_activities(nothing)  # joins, owns every slot, runs no untagged work
        await a._ctx.store.batch(instance_id, [BatchOperation.create(dump(doc))])

        async def beat() -> None:
            while True:
                await a.fetch_activities(nothing)
                await anyio.sleep(0.1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(beat)
            await w.runtime_started("w")
            started = time.monotonic()
            request = FetchActivityRequest(lock_timeout=60.0, poll_timeout=LIVENESS)
            [item] = await w.fetch_activities(request)
            took = time.monotonic() - started
            tg.cancel_scope.cancel()
    assert item.task.instance_id == instance_id
    assert took < HANDOVER_GRACE_S + 3 * READ_S, f"took {took:.1f} s (idle sweep: {IDLE_SWEEP_S})"
