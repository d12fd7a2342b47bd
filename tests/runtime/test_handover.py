"""HandOver: the work a commit makes due reaches the other side's pool in the same round trip.

Runs against the in-memory store (which fetches with its commits) and pools that record what
they are given, so each test sees exactly which items were handed over and which stayed queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import anyio
import pytest

from duro import InMemoryProvider, ProviderError
from duro._runtime._handover import HandOver
from duro._runtime._pool import WorkPool
from duro.providers import (
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    TurnCommit,
)
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import (
    activity_result,
    activity_task,
    fetch_all_activities,
    start_and_lock,
    turn_commit,
)

pytestmark = pytest.mark.anyio

T = TypeVar("T")


class Recorder(Generic[T]):
    """A pool handler that keeps every item it was given and holds its slot until released."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.release = anyio.Event()

    async def __call__(self, item: T) -> None:
        self.items.append(item)
        await self.release.wait()


class Setup:
    def __init__(self, store: InMemoryProvider, slots: int) -> None:
        self.store = store
        self.turn_pool = WorkPool[OrchestrationWorkItem](slots, receives_hand_overs=True)
        self.activity_pool = WorkPool[ActivityWorkItem](slots, receives_hand_overs=True)
        self.turns = Recorder[OrchestrationWorkItem]()
        self.activities = Recorder[ActivityWorkItem]()
        self.stopping = anyio.Event()
        self.hand_over = HandOver(
            store,
            turns=self.turn_pool,
            activities=self.activity_pool,
            turn_request=FetchTurnRequest(lock_timeout=30, max_items=slots),
            activity_request=FetchActivityRequest(lock_timeout=30, max_items=slots),
        )

    async def scheduling_commit(self, instance_id: str, activities: int) -> TurnCommit:
        item = await start_and_lock(self.store, instance_id)
        tasks = [activity_task(instance_id, seq) for seq in range(1, activities + 1)]
        return turn_commit(item, activity_tasks=tasks)


@asynccontextmanager
async def running(store: InMemoryProvider, slots: int = 4) -> AsyncIterator[Setup]:
    setup = Setup(store, slots)
    async with (
        setup.turn_pool.running(setup.turns, setup.stopping),
        setup.activity_pool.running(setup.activities, setup.stopping),
    ):
        try:
            yield setup
        finally:
            setup.turns.release.set()
            setup.activities.release.set()
            setup.stopping.set()


@pytest.fixture
def store() -> InMemoryProvider:
    return InMemoryProvider(clock=VirtualClock())


async def settle() -> None:
    """Let started handlers run up to their first wait."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_committed_turns_hand_the_activities_they_schedule_to_free_slots(
    store: InMemoryProvider,
) -> None:
    async with running(store) as setup:
        commit = await setup.scheduling_commit("i1", activities=2)

        assert await setup.hand_over.commit_turns([commit]) == [None]
        await settle()

        assert sorted(item.task.seq for item in setup.activities.items) == [1, 2]
        assert await fetch_all_activities(store) == []  # locked by the hand-over


async def test_a_hand_over_takes_no_more_than_the_free_slots(store: InMemoryProvider) -> None:
    async with running(store, slots=2) as setup:
        assert setup.activity_pool.try_reserve(1) == 1  # one slot busy elsewhere
        commit = await setup.scheduling_commit("i1", activities=3)

        await setup.hand_over.commit_turns([commit])
        await settle()

        assert [item.task.seq for item in setup.activities.items] == [1]
        assert [item.task.seq for item in await fetch_all_activities(store)] == [2, 3]
        setup.activity_pool.release(1, lent=True)


async def test_with_no_free_slot_the_commit_is_plain_and_the_work_stays_queued(
    store: InMemoryProvider,
) -> None:
    async with running(store, slots=1) as setup:
        assert setup.activity_pool.try_reserve(1) == 1
        commit = await setup.scheduling_commit("i1", activities=1)

        assert await setup.hand_over.commit_turns([commit]) == [None]
        await settle()

        assert setup.activities.items == []
        assert [item.task.seq for item in await fetch_all_activities(store)] == [1]
        setup.activity_pool.release(1, lent=True)


async def test_reports_hand_the_turns_they_make_due_to_the_turn_pool(
    store: InMemoryProvider,
) -> None:
    async with running(store) as setup:
        await store.commit_turn(await setup.scheduling_commit("i1", activities=1))
        [work] = await fetch_all_activities(store)
        report = ActivityCommit(lock_token=work.lock_token, result=activity_result(work.task))

        assert await setup.hand_over.complete_activities([report]) == [None]
        await settle()

        assert [item.instance_id for item in setup.turns.items] == ["i1"]
        assert await store.fetch_turn(FetchTurnRequest(lock_timeout=30)) is None


async def test_a_store_that_cannot_fetch_with_commits_only_commits(
    store: InMemoryProvider,
) -> None:
    class PlainStore(InMemoryProvider):
        fetches_with_commits = False

    plain = PlainStore(clock=VirtualClock())
    async with running(plain) as setup:
        commit = await setup.scheduling_commit("i1", activities=1)

        assert await setup.hand_over.commit_turns([commit]) == [None]
        await settle()

        assert setup.activities.items == []
        assert [item.task.seq for item in await fetch_all_activities(plain)] == [1]


async def test_hand_overs_stop_once_shutdown_begins(store: InMemoryProvider) -> None:
    async with running(store) as setup:
        commit = await setup.scheduling_commit("i1", activities=1)
        setup.stopping.set()

        await setup.hand_over.commit_turns([commit])
        await settle()

        assert setup.activities.items == []
        assert [item.task.seq for item in await fetch_all_activities(store)] == [1]


async def test_a_failed_combined_call_gives_back_every_slot_it_reserved(
    store: InMemoryProvider,
) -> None:
    class FailingStore(InMemoryProvider):
        async def commit_turns_and_fetch_activities(
            self, commits: Sequence[TurnCommit], fetch: FetchActivityRequest
        ) -> tuple[list[ProviderError | None], list[ActivityWorkItem]]:
            raise ProviderError("commit_turns", "the store is down", retryable=True)

    failing = FailingStore(clock=VirtualClock())
    async with running(failing, slots=3) as setup:
        commit = await setup.scheduling_commit("i1", activities=1)

        with pytest.raises(ProviderError):
            await setup.hand_over.commit_turns([commit])

        assert setup.activity_pool.try_reserve(3) == 3
        setup.activity_pool.release(3, lent=True)
