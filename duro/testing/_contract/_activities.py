"""Contract: the worker queue (fetch, complete, abandon, renew, withdrawal)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from ..._errors import LockLostError
from ..._messages import ActivityResultMessage, ActivityTask
from ...providers import Provider
from ...providers._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    ExecutionStatus,
    RenewRequest,
    TagFilter,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_result,
    activity_task,
    continue_as_new,
    create_instance,
    fetch_all_activities,
    next_turn,
    raw,
    schedule_activities,
    seqs,
    turn_request,
)


async def _orchestrator_messages(provider: Provider, instance_id: str) -> list[object]:
    """The messages of ``instance_id``'s next turn ([] if none); leaves the turn locked."""
    item = await provider.fetch_turn(turn_request())
    if item is None:
        return []
    assert item.instance_id == instance_id
    return list(item.messages)


class ActivityQueueContract(ContractBase):
    """Work items: peek-lock delivery, completion, abandon, renewal, expiry and withdrawal."""

    async def _fetch_one(self, provider: Provider) -> ActivityWorkItem:
        item = await provider.fetch_activity(activity_request(self.lock_timeout))
        assert item is not None, "expected a visible work item"
        return item

    @pytest.mark.anyio
    async def test_fetch_activity_on_empty_queue_returns_none(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None

    @pytest.mark.anyio
    async def test_scheduled_activity_is_fetchable_at_once_with_attempt_one(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])

        item = await self._fetch_one(provider)

        assert item.task.instance_id == "i1"
        assert item.task.seq == 1
        assert item.delivery_count == 1
        assert item.lock_token

    @pytest.mark.anyio
    async def test_activity_task_round_trips_every_field(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = ActivityTask(
            instance_id="i1",
            execution_id=1,
            seq=7,
            name="charge",
            input=raw({"amount": 12, "currency": "€"}),
            attempt=3,
            tag="gpu",
            orchestration_name="Billing",
            orchestration_version="2.1.0",
        )
        await schedule_activities(provider, "i1", [task])

        item = await provider.fetch_activity(activity_request(tag_filter=TagFilter.any()))

        assert item is not None
        assert item.task == task

    @pytest.mark.anyio
    async def test_locked_activity_is_invisible_to_other_fetches(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        await self._fetch_one(provider)

        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None

    @pytest.mark.anyio
    async def test_lock_tokens_are_unique_per_fetch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tasks = [activity_task("i1", seq) for seq in range(1, 6)]
        await schedule_activities(provider, "i1", tasks)

        items = await fetch_all_activities(provider)

        assert len({item.lock_token for item in items}) == 5

    @pytest.mark.anyio
    async def test_activities_are_delivered_oldest_first(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", s) for s in (1, 2, 3)])
        await clock.advance(1)
        await next_turn(provider, "i1", activity_tasks=[activity_task("i1", 4)])
        await clock.advance(1)
        await next_turn(provider, "i1", activity_tasks=[activity_task("i1", 5)])

        assert seqs(await fetch_all_activities(provider)) == [1, 2, 3, 4, 5]

    @pytest.mark.anyio
    async def test_complete_activity_removes_item_and_enqueues_result_atomically(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)

        await provider.complete_activity(
            ActivityCommit(lock_token=item.lock_token, result=activity_result(task, 42))
        )

        assert await provider.fetch_activity(activity_request(tag_filter=TagFilter.any())) is None
        messages = await _orchestrator_messages(provider, "i1")
        assert messages == [
            ActivityResultMessage(instance_id="i1", execution_id=1, seq=1, result=raw(42))
        ]

    @pytest.mark.anyio
    async def test_complete_activity_without_result_drops_item_and_enqueues_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        item = await self._fetch_one(provider)

        await provider.complete_activity(ActivityCommit(lock_token=item.lock_token, result=None))

        assert await provider.fetch_activity(activity_request(tag_filter=TagFilter.any())) is None
        assert await provider.fetch_turn(turn_request()) is None
        depths = await provider.queue_depths()
        assert (depths.orchestrator, depths.worker, depths.locked) == (0, 0, 0)

    @pytest.mark.anyio
    async def test_completing_an_activity_twice_raises_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)
        await provider.complete_activity(
            ActivityCommit(lock_token=item.lock_token, result=activity_result(task))
        )

        with pytest.raises(LockLostError) as caught:
            await provider.complete_activity(
                ActivityCommit(lock_token=item.lock_token, result=activity_result(task))
            )

        assert caught.value.retryable is False
        assert len(await _orchestrator_messages(provider, "i1")) == 1

    @pytest.mark.anyio
    async def test_unknown_activity_token_raises_lock_lost_everywhere(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        with pytest.raises(LockLostError):
            await provider.complete_activity(ActivityCommit(lock_token="nope", result=None))
        with pytest.raises(LockLostError):
            await provider.abandon_activity(AbandonRequest(lock_token="nope"))
        with pytest.raises(LockLostError):
            await provider.renew_activity_lock(RenewRequest(lock_token="nope", extend_for=5))

    @pytest.mark.anyio
    async def test_abandoned_activity_is_redelivered_with_new_token_and_higher_attempt(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        first = await self._fetch_one(provider)

        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token))
        second = await self._fetch_one(provider)

        assert second.task == first.task
        assert second.delivery_count == 2
        assert second.lock_token != first.lock_token
        with pytest.raises(LockLostError):
            await provider.complete_activity(
                ActivityCommit(lock_token=first.lock_token, result=None)
            )

    @pytest.mark.anyio
    async def test_abandon_with_delay_hides_activity_until_delay_passes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        first = await self._fetch_one(provider)

        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token, delay=10))

        await clock.advance(9)
        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None
        await clock.advance(1.5)
        assert (await self._fetch_one(provider)).task.seq == 1

    @pytest.mark.anyio
    async def test_delayed_activity_is_skipped_for_the_next_visible_one(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1), activity_task("i1", 2)])
        first = await self._fetch_one(provider)
        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token, delay=10))

        assert (await self._fetch_one(provider)).task.seq == 2
        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None

    @pytest.mark.anyio
    async def test_abandon_ignoring_attempt_undoes_the_increment(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        first = await self._fetch_one(provider)
        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token))
        second = await self._fetch_one(provider)
        assert second.delivery_count == 2

        await provider.abandon_activity(
            AbandonRequest(lock_token=second.lock_token, undo_delivery_count=True)
        )

        assert (await self._fetch_one(provider)).delivery_count == 2

    @pytest.mark.anyio
    async def test_ignoring_attempts_never_drops_below_first_delivery(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        for _ in range(3):
            item = await self._fetch_one(provider)
            assert item.delivery_count == 1
            await provider.abandon_activity(
                AbandonRequest(lock_token=item.lock_token, undo_delivery_count=True)
            )

        assert (await self._fetch_one(provider)).delivery_count == 1

    @pytest.mark.anyio
    async def test_attempt_count_is_per_work_item(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        first = await self._fetch_one(provider)
        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token))
        await next_turn(provider, "i1", activity_tasks=[activity_task("i1", 2)])

        items = await fetch_all_activities(provider)

        assert {item.task.seq: item.delivery_count for item in items} == {1: 2, 2: 1}

    @pytest.mark.anyio
    async def test_renewed_activity_lock_outlives_its_original_expiry(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)

        await clock.advance(self.lock_timeout * 0.6)
        await provider.renew_activity_lock(
            RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
        )
        await clock.advance(self.lock_timeout * 0.6)

        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None
        await provider.complete_activity(
            ActivityCommit(lock_token=item.lock_token, result=activity_result(task))
        )

    @pytest.mark.anyio
    async def test_an_expired_activity_lock_nobody_took_over_renews_and_completes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # Expiry only lets others take over; the token is the fence. A worker whose event
        # loop stalled past its lease keeps a result nobody else started.
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)
        await clock.advance(self.lock_timeout + 1)

        await provider.renew_activity_lock(
            RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
        )
        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None
        await clock.advance(self.lock_timeout + 1)
        await provider.complete_activity(
            ActivityCommit(lock_token=item.lock_token, result=activity_result(task))
        )

        assert len(await _orchestrator_messages(provider, "i1")) == 1
        assert (await provider.queue_depths()).worker == 0

    @pytest.mark.anyio
    async def test_a_taken_over_activity_lock_can_neither_renew_nor_abandon(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        stale = await self._fetch_one(provider)
        await clock.advance(self.lock_timeout + 1)
        fresh = await self._fetch_one(provider)

        with pytest.raises(LockLostError):
            await provider.renew_activity_lock(
                RenewRequest(lock_token=stale.lock_token, extend_for=self.lock_timeout)
            )
        with pytest.raises(LockLostError):
            await provider.abandon_activity(AbandonRequest(lock_token=stale.lock_token))
        await provider.complete_activity(ActivityCommit(lock_token=fresh.lock_token, result=None))

    @pytest.mark.anyio
    async def test_renewing_a_completed_activity_raises_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        item = await self._fetch_one(provider)
        await provider.complete_activity(ActivityCommit(lock_token=item.lock_token, result=None))

        with pytest.raises(LockLostError):
            await provider.renew_activity_lock(
                RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
            )

    @pytest.mark.anyio
    async def test_expired_activity_lock_redelivers_with_higher_attempt(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        first = await self._fetch_one(provider)

        await clock.advance(self.lock_timeout + 1)
        second = await self._fetch_one(provider)

        assert second.task == first.task
        assert second.delivery_count == 2
        assert second.lock_token != first.lock_token

    @pytest.mark.anyio
    async def test_completion_after_a_takeover_raises_lock_lost_and_enqueues_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)
        await clock.advance(self.lock_timeout + 1)
        taken_over = await self._fetch_one(provider)

        with pytest.raises(LockLostError):
            await provider.complete_activity(
                ActivityCommit(lock_token=item.lock_token, result=activity_result(task))
            )

        assert await _orchestrator_messages(provider, "i1") == []
        assert taken_over.task == task
        await provider.complete_activity(
            ActivityCommit(lock_token=taken_over.lock_token, result=activity_result(task))
        )

    @pytest.mark.anyio
    async def test_withdrawn_activity_is_never_delivered(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])

        await next_turn(provider, "i1", cancelled_activities=[task.seq])

        assert await provider.fetch_activity(activity_request(tag_filter=TagFilter.any())) is None

    @pytest.mark.anyio
    async def test_withdrawn_activity_cannot_be_renewed(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)

        await next_turn(provider, "i1", cancelled_activities=[task.seq])

        with pytest.raises(LockLostError):
            await provider.renew_activity_lock(
                RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
            )

    @pytest.mark.anyio
    async def test_withdrawn_activity_cannot_be_completed(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        item = await self._fetch_one(provider)
        await next_turn(provider, "i1", cancelled_activities=[task.seq])

        with pytest.raises(LockLostError) as caught:
            await provider.complete_activity(
                ActivityCommit(lock_token=item.lock_token, result=activity_result(task))
            )

        assert caught.value.retryable is False
        assert await _orchestrator_messages(provider, "i1") == []
        assert (await provider.queue_depths()).worker == 0

    @pytest.mark.anyio
    async def test_activity_inserted_and_withdrawn_in_one_commit_is_absent(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        doomed, kept = activity_task("i1", 1), activity_task("i1", 2)

        await next_turn(
            provider,
            "i1",
            activity_tasks=[doomed, kept],
            cancelled_activities=[doomed.seq],
        )

        assert seqs(await fetch_all_activities(provider)) == [2]

    @pytest.mark.anyio
    async def test_withdrawal_removes_only_the_listed_activities(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tasks = [activity_task("i1", seq) for seq in range(1, 6)]
        await schedule_activities(provider, "i1", tasks)

        await next_turn(provider, "i1", cancelled_activities=[tasks[0].seq, tasks[3].seq])

        assert seqs(await fetch_all_activities(provider)) == [2, 3, 5]

    @pytest.mark.anyio
    async def test_withdrawing_unknown_activities_is_ignored(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])

        await next_turn(
            provider,
            "i1",
            cancelled_activities=[99],
        )

        assert seqs(await fetch_all_activities(provider)) == [1]

    @pytest.mark.anyio
    async def test_withdrawal_matches_the_execution_of_the_activity(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1, execution_id=1)])
        await continue_as_new(
            provider, "i1", activity_tasks=[activity_task("i1", 1, execution_id=2)]
        )

        await next_turn(
            provider,
            "i1",
            cancelled_activities=[1],
        )

        items = await fetch_all_activities(provider)
        assert [(item.task.execution_id, item.task.seq) for item in items] == [(1, 1)]

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "status",
        [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CONTINUED_AS_NEW],
    )
    async def test_activity_delivery_ignores_orchestration_status(
        self, provider: Provider, clock: VirtualClock, status: ExecutionStatus
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        await next_turn(provider, "i1", status=status)

        item = await self._fetch_one(provider)
        await provider.renew_activity_lock(
            RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
        )
        await provider.complete_activity(ActivityCommit(lock_token=item.lock_token, result=None))

    @pytest.mark.anyio
    async def test_concurrent_fetchers_never_share_a_work_item(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", s) for s in range(1, 11)])
        fetched: list[ActivityWorkItem | None] = []

        async def fetch() -> None:
            fetched.append(await provider.fetch_activity(activity_request(self.lock_timeout)))

        async with anyio.create_task_group() as group:
            for _ in range(15):
                group.start_soon(fetch)

        delivered = [item for item in fetched if item is not None]
        assert sorted(seqs(delivered)) == list(range(1, 11))
