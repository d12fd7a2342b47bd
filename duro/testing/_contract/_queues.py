"""Contract: orchestrator-queue semantics, attempt counts (poison input) and long polling."""

from __future__ import annotations

from typing import ClassVar

import anyio
import pytest

from ..._messages import ActivityResultMessage, CancelOrchestrationMessage, EnqueueEventMessage
from ...providers import Provider
from ...providers._types import (
    AbandonRequest,
    ExecutionStatus,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    ScheduledMessage,
    TagFilter,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_task,
    create_instance,
    external_event,
    lock_next_turn,
    raw,
    start_and_lock,
    start_message,
    turn_commit,
)
from ._helpers import (
    REAL_TIME_LIMIT,
    Background,
    drive_until_done,
    event_names,
    kinds,
    must_turn,
    timer,
    try_turn,
)


def _queue_event(instance_id: str, data: object = None) -> ScheduledMessage:
    return ScheduledMessage(
        message=EnqueueEventMessage(instance_id=instance_id, queue="q", data=raw(data))
    )


def _orphan_result(instance_id: str, seq: int) -> ScheduledMessage:
    return ScheduledMessage(
        message=ActivityResultMessage(
            instance_id=instance_id, execution_id=1, seq=seq, result=raw(seq)
        )
    )


class QueueSemanticsContract(ContractBase):
    """Visibility times, batch order, routing, and messages for instances that never started."""

    @pytest.mark.anyio
    async def test_batch_holds_every_visible_message_in_enqueue_order(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(external_event("i1", "a"))
        await provider.enqueue_orchestrator_message(_queue_event("i1"))
        await provider.enqueue_orchestrator_message(_orphan_result("i1", 3))
        await provider.enqueue_orchestrator_message(external_event("i1", "b"))

        item = await must_turn(provider, self.lock_timeout, "i1")

        assert kinds(item.messages) == [
            "RaiseEventMessage",
            "EnqueueEventMessage",
            "ActivityResultMessage",
            "RaiseEventMessage",
        ]
        assert event_names(item.messages) == ["a", "b"]

    @pytest.mark.anyio
    async def test_delayed_message_is_invisible_until_its_time(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        message = external_event("i1", "later").message
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=message, visible_at_ms=clock.now_ms() + 5_000)
        )

        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(4.9)
        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(0.2)
        assert (await must_turn(provider, self.lock_timeout, "i1")).messages == [message]

    @pytest.mark.anyio
    async def test_timer_scheduled_by_a_commit_fires_at_its_visible_time(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        fired = timer("i1", 1, clock.now_ms() + 30_000)
        await provider.commit_turn(turn_commit(item, orchestrator_messages=[fired]))

        await clock.advance(29.5)
        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(1)

        assert (await must_turn(provider, self.lock_timeout, "i1")).messages == [fired.message]

    @pytest.mark.anyio
    async def test_timer_due_in_the_past_is_visible_at_once(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(timer("i1", 1, clock.now_ms() - 10_000))

        item = await must_turn(provider, self.lock_timeout, "i1")

        assert kinds(item.messages) == ["TimerFiredMessage"]

    @pytest.mark.anyio
    async def test_an_instance_that_ends_drops_its_pending_timers(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # A select's losing timeout, say: nothing will ever want it once the instance ended.
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(timer("i1", 1, clock.now_ms() + 3_600_000))
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.commit_turn(turn_commit(item, status=ExecutionStatus.COMPLETED))

        assert (await provider.queue_depths()).timers == 0
        await clock.advance(3_600)
        assert await try_turn(provider, self.lock_timeout) is None

    @pytest.mark.anyio
    async def test_future_message_is_not_part_of_the_current_batch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(timer("i1", 1, clock.now_ms() + 10_000))
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        assert kinds(item.messages) == ["RaiseEventMessage"]

        await provider.commit_turn(turn_commit(item))

        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(10)
        assert kinds((await must_turn(provider, self.lock_timeout, "i1")).messages) == [
            "TimerFiredMessage"
        ]

    @pytest.mark.anyio
    async def test_message_a_commit_sends_to_another_instance_reaches_it(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "receiver")
        sender = await start_and_lock(provider, "sender", lock_timeout=self.lock_timeout)

        await provider.commit_turn(
            turn_commit(sender, orchestrator_messages=[external_event("receiver", "hi")])
        )

        item = await must_turn(provider, self.lock_timeout, "receiver")
        assert event_names(item.messages) == ["hi"]

    @pytest.mark.anyio
    async def test_orphan_queue_events_and_cancellations_do_not_block_other_instances(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.enqueue_orchestrator_message(_queue_event("ghost"))
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=CancelOrchestrationMessage(instance_id="ghost", reason="stop"))
        )
        await provider.start_orchestration(start_message("real"))

        item = await must_turn(provider, self.lock_timeout, "real")
        await provider.commit_turn(turn_commit(item))

        assert await try_turn(provider, self.lock_timeout) is None
        assert await provider.read_instance("ghost") is None

    @pytest.mark.anyio
    async def test_orphan_external_event_waits_for_the_start_and_joins_its_batch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.enqueue_orchestrator_message(external_event("late", "early-bird"))
        assert await try_turn(provider, self.lock_timeout) is None
        assert await provider.read_instance("late") is None

        await provider.start_orchestration(start_message("late"))

        item = await must_turn(provider, self.lock_timeout, "late")
        assert kinds(item.messages) == ["RaiseEventMessage", "StartOrchestrationMessage"]
        assert event_names(item.messages) == ["early-bird"]

    @pytest.mark.anyio
    async def test_orphan_completions_do_not_starve_other_instances(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        for seq in range(5):
            await provider.enqueue_orchestrator_message(_orphan_result("ghost", seq))
        for n in range(3):
            await provider.start_orchestration(start_message(f"real{n}"))

        served = [(await must_turn(provider, self.lock_timeout)).instance_id for _ in range(3)]

        assert served == ["real0", "real1", "real2"]
        assert await try_turn(provider, self.lock_timeout) is None
        await provider.start_orchestration(start_message("ghost"))
        ghost = await must_turn(provider, self.lock_timeout, "ghost")
        assert kinds(ghost.messages) == ["ActivityResultMessage"] * 5 + [
            "StartOrchestrationMessage"
        ]

    @pytest.mark.anyio
    async def test_queue_events_for_an_existing_instance_are_delivered(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(_queue_event("i1", 1))
        await provider.enqueue_orchestrator_message(_queue_event("i1", 2))

        item = await must_turn(provider, self.lock_timeout, "i1")

        assert item.messages == [_queue_event("i1", 1).message, _queue_event("i1", 2).message]


class ArrivalOrderContract(ContractBase):
    """A delayed message (timer, delayed enqueue) arrives when it becomes visible.

    Batches and the choice of instance follow visible-at time, then enqueue order, so a
    10 s timer precedes a 30 s one that was scheduled first even when both fall due in one
    fetch. (Proposed wording for ``OrchestrationWorkItem.messages``; not yet in the contract.)
    """

    @pytest.mark.anyio
    async def test_batch_orders_delayed_messages_by_the_time_they_became_visible(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        now = clock.now_ms()
        late = external_event("i1", "late").message
        await provider.enqueue_orchestrator_message(timer("i1", 1, now + 30_000))
        await provider.enqueue_orchestrator_message(timer("i1", 2, now + 10_000))
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=late, visible_at_ms=now + 20_000)
        )

        await clock.advance(60)

        item = await must_turn(provider, self.lock_timeout, "i1")
        assert item.messages == [
            timer("i1", 2, now + 10_000).message,
            late,
            timer("i1", 1, now + 30_000).message,
        ]

    @pytest.mark.anyio
    async def test_fetch_serves_the_instance_whose_message_became_visible_first(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "slow")
        await create_instance(provider, "fast")
        now = clock.now_ms()
        await provider.enqueue_orchestrator_message(timer("slow", 1, now + 30_000))
        await provider.enqueue_orchestrator_message(timer("fast", 1, now + 10_000))

        await clock.advance(60)

        order = [(await must_turn(provider, self.lock_timeout)).instance_id for _ in range(2)]
        assert order == ["fast", "slow"]


class PoisonContract(ContractBase):
    """Every delivery counts; a batch reports the highest count among its messages."""

    @pytest.mark.anyio
    async def test_first_turn_delivery_reports_attempt_one(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        assert item.delivery_count == 1

    @pytest.mark.anyio
    async def test_turn_attempt_rises_with_each_abandon_and_refetch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        attempts = [item.delivery_count]
        for _ in range(2):
            await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
            item = await must_turn(provider, self.lock_timeout, "i1")
            attempts.append(item.delivery_count)

        assert attempts == [1, 2, 3]

    @pytest.mark.anyio
    async def test_turn_attempt_rises_when_the_lock_expires(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout + 1)

        item = await must_turn(provider, self.lock_timeout, "i1")

        assert item.delivery_count == 2

    @pytest.mark.anyio
    async def test_abandon_ignoring_attempt_undoes_the_increment(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
        second = await must_turn(provider, self.lock_timeout, "i1")
        assert second.delivery_count == 2

        await provider.abandon_turn(
            AbandonRequest(lock_token=second.lock_token, undo_delivery_count=True)
        )

        assert (await must_turn(provider, self.lock_timeout, "i1")).delivery_count == 2

    @pytest.mark.anyio
    async def test_ignoring_attempts_never_drops_below_the_first_delivery(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        for _ in range(3):
            await provider.abandon_turn(
                AbandonRequest(lock_token=item.lock_token, undo_delivery_count=True)
            )
            item = await must_turn(provider, self.lock_timeout, "i1")
            assert item.delivery_count == 1

    @pytest.mark.anyio
    async def test_turn_attempt_is_the_highest_count_in_its_batch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        for _ in range(2):
            await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
            item = await must_turn(provider, self.lock_timeout, "i1")
        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
        await provider.enqueue_orchestrator_message(external_event("i1", "fresh"))

        batch = await must_turn(provider, self.lock_timeout, "i1")

        assert kinds(batch.messages) == ["StartOrchestrationMessage", "RaiseEventMessage"]
        assert batch.delivery_count == 4

    @pytest.mark.anyio
    async def test_message_after_a_commit_starts_again_at_attempt_one(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
        item = await must_turn(provider, self.lock_timeout, "i1")
        assert item.delivery_count == 2
        await provider.commit_turn(turn_commit(item))

        later = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)

        assert later.delivery_count == 1

    @pytest.mark.anyio
    async def test_attempt_counts_are_kept_per_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "a", lock_timeout=self.lock_timeout)
        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token, delay=60))
        await provider.start_orchestration(start_message("b"))

        other = await must_turn(provider, self.lock_timeout, "b")

        assert other.delivery_count == 1


class LongPollingContract(ContractBase):
    """Fetches honour ``poll_timeout``; long-polling stores wake when work shows up.

    Set ``long_polling = True`` for a store that waits for work: the wake-up tests then run.
    A short-polling store only has to return promptly.
    """

    long_polling: ClassVar[bool] = False
    poll_timeout: ClassVar[float] = 0.5
    """Virtual seconds the polling tests pass as ``poll_timeout``."""

    def _require_long_polling(self) -> None:
        if not self.long_polling:
            pytest.skip("the store short-polls (long_polling = False)")

    def _turn_poll(self, poll_timeout: float | None = None) -> FetchTurnRequest:
        timeout = self.poll_timeout if poll_timeout is None else poll_timeout
        return FetchTurnRequest(lock_timeout=self.lock_timeout, poll_timeout=timeout)

    def _activity_poll(self, tag_filter: TagFilter | None = None) -> FetchActivityRequest:
        return FetchActivityRequest(
            lock_timeout=self.lock_timeout,
            poll_timeout=self.poll_timeout,
            tag_filter=tag_filter or TagFilter(),
        )

    @pytest.mark.anyio
    async def test_turn_fetch_with_work_ready_returns_at_once(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1"))

        with anyio.fail_after(REAL_TIME_LIMIT):
            item = await provider.fetch_turn(self._turn_poll(poll_timeout=3600))

        assert item is not None

    @pytest.mark.anyio
    async def test_empty_turn_fetch_returns_none_promptly_after_poll_timeout(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        result, waited = await drive_until_done(
            clock,
            lambda: provider.fetch_turn(self._turn_poll()),
            step=0.05,
            limit=self.poll_timeout + 1,
        )

        assert result is None
        assert waited <= self.poll_timeout + 0.2

    @pytest.mark.anyio
    async def test_empty_activity_fetch_returns_none_promptly_after_poll_timeout(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        result, waited = await drive_until_done(
            clock,
            lambda: provider.fetch_activity(self._activity_poll()),
            step=0.05,
            limit=self.poll_timeout + 1,
        )

        assert result is None
        assert waited <= self.poll_timeout + 0.2

    @pytest.mark.anyio
    async def test_long_poll_turn_fetch_waits_for_the_whole_poll_timeout(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_turn(self._turn_poll()))
                await anyio.wait_all_tasks_blocked()
                await clock.advance(self.poll_timeout * 0.8)
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await clock.advance(self.poll_timeout * 0.2 + 0.01)
        assert fetch.result is None

    @pytest.mark.anyio
    async def test_long_poll_turn_fetch_wakes_when_a_start_is_enqueued(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_turn(self._turn_poll(3600)))
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await provider.start_orchestration(start_message("i1"))
        assert isinstance(fetch.result, OrchestrationWorkItem)
        assert fetch.result.instance_id == "i1"

    @pytest.mark.anyio
    async def test_long_poll_turn_fetch_wakes_when_a_timer_falls_due(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(timer("i1", 1, clock.now_ms() + 10_000))
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_turn(self._turn_poll(3600)))
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await clock.advance(10)
        assert isinstance(fetch.result, OrchestrationWorkItem)
        assert kinds(fetch.result.messages) == ["TimerFiredMessage"]

    @pytest.mark.anyio
    async def test_long_poll_turn_fetch_wakes_when_a_lock_expires(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        stale = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_turn(self._turn_poll(3600)))
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await clock.advance(self.lock_timeout + 1)
        assert isinstance(fetch.result, OrchestrationWorkItem)
        assert fetch.result.lock_token != stale.lock_token

    @pytest.mark.anyio
    async def test_long_poll_turn_fetch_wakes_when_a_turn_is_abandoned(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_turn(self._turn_poll(3600)))
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
        assert isinstance(fetch.result, OrchestrationWorkItem)
        assert fetch.result.instance_id == "i1"

    @pytest.mark.anyio
    async def test_long_poll_activity_fetch_wakes_when_a_commit_schedules_work(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_activity(self._activity_poll()))
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await provider.commit_turn(
                    turn_commit(item, activity_tasks=[activity_task("i1", 1)])
                )
        assert fetch.result is not None
        assert await provider.fetch_activity(activity_request()) is None

    @pytest.mark.anyio
    async def test_long_poll_activity_fetch_ignores_work_its_filter_rejects(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        self._require_long_polling()
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        fetch = Background()
        with anyio.fail_after(REAL_TIME_LIMIT):
            async with anyio.create_task_group() as tg:
                fetch.start(tg, lambda: provider.fetch_activity(self._activity_poll()))
                await anyio.wait_all_tasks_blocked()
                await provider.commit_turn(
                    turn_commit(item, activity_tasks=[activity_task("i1", 1, tag="gpu")])
                )
                await anyio.wait_all_tasks_blocked()
                assert not fetch.done
                await clock.advance(self.poll_timeout + 0.01)
        assert fetch.result is None
        gpu = activity_request(tag_filter=TagFilter(tags=frozenset({"gpu"})))
        assert await provider.fetch_activity(gpu) is not None
