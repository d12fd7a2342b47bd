"""What user code and user input cannot do to a runtime: the failures issue 12 found, pinned.

Each test is one finding of the adversarial probing: the runtime must fail the one instance or
attempt with a clear error, and go on serving (and shut down) as if nothing happened.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

import duro
from duro.providers import (
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    Provider,
    RenewRequest,
)
from duro.testing import VirtualClock

from ._support import completed, failed, runtime, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_or_system_exit_in_an_activity_fails_that_attempt(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    exc_type: type[BaseException],
) -> None:
    @registry.activity
    def quits(ctx: duro.ActivityContext, _: None) -> None:
        raise exc_type("user code asked to quit")

    @registry.activity
    async def fine(ctx: duro.ActivityContext, _: None) -> str:
        return "still serving"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        try:
            await ctx.schedule_activity(quits)
        except duro.ActivityFailedError as exc:
            return [exc.error_type, await ctx.schedule_activity(fine)]
        return []

    async with runtime(store, registry, clock):
        await client.start_orchestration("quits-1", orch)
        assert await completed(client, "quits-1") == [exc_type.__name__, "still serving"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_or_system_exit_in_orchestration_code_fails_the_instance(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    exc_type: type[BaseException],
) -> None:
    @registry.orchestration
    async def quits(ctx: duro.OrchestrationContext, _: None) -> None:
        raise exc_type("orchestration code asked to quit")

    @registry.orchestration
    async def fine(ctx: duro.OrchestrationContext, _: None) -> str:
        return "still serving"

    async with runtime(store, registry, clock):
        await client.start_orchestration("quits-2", quits)
        error = await failed(client, "quits-2")
        assert error.error_type == exc_type.__name__
        assert error.category is duro.ErrorCategory.APPLICATION
        await client.start_orchestration("fine-2", fine)
        assert await completed(client, "fine-2") == "still serving"


async def test_nan_and_infinity_are_refused_at_the_boundary_not_turned_into_null(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def measures(ctx: duro.ActivityContext, _: None) -> float:
        return math.nan

    @registry.orchestration
    async def takes(ctx: duro.OrchestrationContext, x: float) -> float:
        return x

    @registry.orchestration
    async def gets(ctx: duro.OrchestrationContext, _: None) -> str:
        try:
            await ctx.schedule_activity(measures)
        except duro.ActivityFailedError as exc:
            return exc.error_type
        return "accepted NaN"

    with pytest.raises(duro.PayloadError, match="NaN or an infinity"):
        await client.start_orchestration("nan-1", takes, math.nan)
    with pytest.raises(duro.PayloadError, match="NaN or an infinity"):
        await client.start_orchestration("nan-2", takes, [math.inf])  # type: ignore[arg-type]
    assert (await client.get_status("nan-1")).state is duro.State.NOT_FOUND
    async with runtime(store, registry, clock):
        await client.start_orchestration("nan-3", gets)
        assert await completed(client, "nan-3") == "PayloadError"


async def test_a_timer_past_a_century_fails_its_instance_and_the_runtime_serves_on(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def forever(ctx: duro.OrchestrationContext, seconds: float) -> None:
        await ctx.schedule_timer(seconds)

    @registry.orchestration
    async def fine(ctx: duro.OrchestrationContext, _: None) -> str:
        return "still serving"

    async with runtime(store, registry, clock):
        await client.start_orchestration("timer-1", forever, 9.3e15)
        error = await failed(client, "timer-1")
        assert error.error_type == "ValueError" and "timer delay" in error.message
        await client.start_orchestration("timer-2", fine)
        assert await completed(client, "timer-2") == "still serving"


async def test_shutdown_returns_while_a_plain_def_activity_ignores_cancellation(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    release = threading.Event()
    started = threading.Event()

    @registry.activity
    def stubborn(ctx: duro.ActivityContext, _: None) -> None:
        started.set()
        release.wait(60)  # never looks at ctx.is_cancelled

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_activity(stubborn)

    try:
        with anyio.fail_after(30):  # shutdown hung forever without the fix
            async with runtime(
                store, registry, clock, shutdown_grace_period=0.1, activity_cancellation_grace=0.2
            ):
                await client.start_orchestration("stubborn-1", orch)
                while not started.is_set():  # noqa: ASYNC110 - a thread's event
                    await anyio.sleep(0.01)
                began = time.monotonic()
        print(f"shutdown took {time.monotonic() - began:.2f} s")
    finally:
        release.set()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.raise_event("big-1", "e" * 257), "event name is 257 characters"),
        (lambda c: c.enqueue_event("big-1", "q" * 10_000, None), "queue name is 10000"),
        (lambda c: c.cancel_orchestration("big-1", "r" * 5_000), "reason is 5000 characters"),
        (lambda c: c.raise_event("big-1", "", None), "event name must be a non-empty"),
    ],
)
async def test_over_long_names_and_reasons_are_refused_before_anything_is_stored(
    store: Provider,
    registry: duro.Registry,
    client: duro.Client,
    clock: VirtualClock,
    call: object,
    match: str,
) -> None:
    @registry.orchestration
    async def waits(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("never")

    await client.start_orchestration("big-1", waits)
    with pytest.raises(duro.PayloadError, match=match):
        await call(client)  # type: ignore[operator]
    assert (await store.queue_depths()).orchestrator == 1  # only the start


async def test_a_kv_key_past_the_limit_fails_the_instance_with_a_payload_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def keys(ctx: duro.OrchestrationContext, _: None) -> None:
        ctx.kv.set("k" * 1_000_000, 1)

    async with runtime(store, registry, clock):
        await client.start_orchestration("kv-1", keys)
        error = await failed(client, "kv-1")
        assert error.error_type == "PayloadError" and "KV key" in error.message


async def test_an_activity_outliving_its_lock_unrenewed_runs_once_and_its_result_counts(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    # The lock runs out with no renewal (as when the event loop is blocked): this worker's
    # fetch loop sees the item free and takes it again. It must adopt the run in progress,
    # not start a second one, and the finished result must not be thrown away.
    runs: list[int] = []

    @registry.activity
    async def outlives_lock(ctx: duro.ActivityContext, _: None) -> str:
        runs.append(ctx.attempt)
        for _tick in range(3):
            await clock.advance(5)  # past activity_lock_timeout, renewal never due on time
            await anyio.sleep(0.05)  # lets the fetch loop run
        return "finished"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> str:
        result: str = await ctx.schedule_activity(outlives_lock)
        return result

    async with runtime(store, registry, clock, activity_lock_timeout=2.0):
        await client.start_orchestration("stall-1", orch)
        assert await completed(client, "stall-1") == "finished"
    assert runs == [1]


class RefetchedHere(duro.SqliteProvider):
    """Stages what a blocked event loop can cause: this worker's lock on its running activity
    ends and this worker fetches the item again (``refetch``). The new delivery reaches the
    runtime once ``hand_over_now()`` says so; until then no other fetch gets through, so
    the runtime cannot take the item itself in between."""

    def __init__(self, path: Path, worker_id: str) -> None:
        super().__init__(path)
        self.worker_id = worker_id
        self.crossing = False
        self.refetched: list[ActivityWorkItem] = []
        self.fetching = 0
        """The runtime's fetches in the store now (one would take the item once unlocked)."""

    async def refetch(self) -> None:
        self.crossing = True
        await wait_until(lambda: self.fetching == 0, what="the runtime's fetch to end")
        await self.runtime_started(self.worker_id)  # this worker's locks end now
        self.refetched = await super().fetch_activities(
            FetchActivityRequest(lock_timeout=30, owner_id=self.worker_id)
        )
        assert len(self.refetched) == 1

    def hand_over_now(self) -> bool:
        raise NotImplementedError  # each staging says when its new delivery may start

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        if self.crossing:
            if self.refetched and self.hand_over_now():
                items, self.refetched, self.crossing = self.refetched, [], False
                return items
            await anyio.sleep(0.01)  # an empty poll as long as the runtime's shortest back-off
            return []
        self.fetching += 1
        try:
            return await super().fetch_activities(
                dataclasses.replace(request, poll_timeout=min(request.poll_timeout, 0.01))
            )
        finally:
            self.fetching -= 1


class ReportCrossesItsRefetch(RefetchedHere):
    """The first activity report reaches the store just after this worker fetched the item
    again, and the new delivery starts only once the first run has ended."""

    fetches_with_commits = False  # reports go through complete_activities

    def __init__(self, path: Path, worker_id: str) -> None:
        super().__init__(path, worker_id)
        self.runtime: duro.Runtime | None = None
        self.crossed = False

    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[duro.ProviderError | None]:
        if not self.crossed:
            self.crossed = True
            await self.refetch()
        return await super().complete_activities(commits)

    def hand_over_now(self) -> bool:
        return self.runtime is not None and self.runtime.in_flight == 0


async def test_a_report_that_meets_this_workers_refetch_is_stored_without_a_second_run(
    tmp_path: Path,
) -> None:
    registry = duro.Registry()
    runs: list[int] = []

    @registry.activity
    async def once(ctx: duro.ActivityContext, _: None) -> str:
        runs.append(ctx.attempt)
        return "finished"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> str:
        result: str = await ctx.schedule_activity(once)
        return result

    async with ReportCrossesItsRefetch(tmp_path / "crossed.db", "w1") as store:
        client = duro.Client(store)
        async with runtime(store, registry, worker_id="w1") as rt:
            store.runtime = rt
            await client.start_orchestration("crossed-1", orch)
            assert await completed(client, "crossed-1") == "finished"
    assert store.crossed and not store.refetched
    assert runs == [1]


class RenewalCrossesItsRefetch(RefetchedHere):
    """The first lock renewal of a running activity fails because this worker fetched the
    item again. With ``adopted_first`` the new delivery reaches the worker before that
    failure does, else just after it; either way while the first run still goes on."""

    def __init__(self, path: Path, worker_id: str, *, adopted_first: bool) -> None:
        super().__init__(path, worker_id)
        self.adopted_first = adopted_first
        self.adopted: Callable[[], bool] = lambda: False
        self.renewal_failed = False

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        if self.renewal_failed or self.crossing:
            return await super().renew_activity_lock(request)
        await self.refetch()
        if self.adopted_first:
            await wait_until(self.adopted, what="the new delivery adopted by the running one")
        try:
            await super().renew_activity_lock(request)  # the old lock: LockLostError
        finally:
            self.renewal_failed = True

    def hand_over_now(self) -> bool:
        return self.adopted_first or self.renewal_failed


@pytest.mark.parametrize(
    ("adopted_first", "expected_runs"),
    [
        # The renewal's failure is stale: the new lock holds, the run goes on and is reported.
        (True, 1),
        # The run was cancelled for its lost lock, then fetched again here: it is offered
        # again rather than dropped under the new lock, and runs a second time.
        (False, 2),
    ],
)
async def test_a_renewal_that_meets_this_workers_refetch_leaves_the_activity_to_finish(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    adopted_first: bool,
    expected_runs: int,
) -> None:
    registry = duro.Registry()
    runs: list[int] = []
    store = RenewalCrossesItsRefetch(tmp_path / "renewed.db", "w1", adopted_first=adopted_first)
    store.adopted = lambda: any("fetched again" in r.getMessage() for r in caplog.records)

    @registry.activity
    async def first_run_outlives_its_lock(ctx: duro.ActivityContext, _: None) -> str:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            await wait_until(lambda: store.renewal_failed and store.adopted())
        return "finished"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> str:
        result: str = await ctx.schedule_activity(first_run_outlives_its_lock)
        return result

    async with store:
        client = duro.Client(store)
        async with runtime(store, registry, worker_id="w1", activity_lock_timeout=0.3):
            await client.start_orchestration("renewed-1", orch)
            assert await completed(client, "renewed-1") == "finished"
    assert len(runs) == expected_runs


async def test_an_async_activity_blocking_the_event_loop_runs_once_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real time, real blocking: time.sleep in async code stops lock renewal for longer than
    # the lock lasts. The result still counts, and the stall is logged with advice.
    registry = duro.Registry()
    runs: list[int] = []

    @registry.activity
    async def blocks_the_loop(ctx: duro.ActivityContext, _: None) -> str:
        runs.append(ctx.attempt)
        time.sleep(1.5)  # noqa: ASYNC251 - the bug under test
        return "finished"

    @registry.orchestration
    async def orch(ctx: duro.OrchestrationContext, _: None) -> str:
        result: str = await ctx.schedule_activity(blocks_the_loop)
        return result

    async with duro.SqliteProvider(tmp_path / "blocked.db") as store:
        client = duro.Client(store)
        async with runtime(store, registry, activity_lock_timeout=0.3):
            await client.start_orchestration("blocked-1", orch)
            assert await completed(client, "blocked-1") == "finished"
    assert runs == [1]
    assert any("event loop was blocked" in r.getMessage() for r in caplog.records)
