"""Contract: instance locks (exclusivity, tagging, isolation) and their expiry and renewal."""

from __future__ import annotations

import dataclasses

import anyio
import anyio.lowlevel
import pytest

from ..._errors import LockLostError, ProviderError
from ...providers import Provider
from ...providers._types import AbandonRequest, RenewRequest
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    create_instance,
    external_event,
    lock_next_turn,
    start_and_lock,
    start_message,
    turn_commit,
    turn_request,
)
from ._helpers import (
    BOGUS_TOKEN,
    event_names,
    kinds,
    must_turn,
    raised,
    timer,
    try_turn,
)


class InstanceLockingContract(ContractBase):
    """One holder per instance; a batch is exactly the messages visible when it was locked."""

    @pytest.mark.anyio
    async def test_locked_instance_is_not_fetched_again(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.enqueue_orchestrator_message(external_event("i1"))

        assert await try_turn(provider, self.lock_timeout) is None

    @pytest.mark.anyio
    async def test_lock_tokens_are_unique_per_fetch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        for n in range(5):
            await provider.start_orchestration(start_message(f"i{n}"))

        items = [await must_turn(provider, self.lock_timeout) for _ in range(5)]

        assert len({item.lock_token for item in items}) == 5
        assert sorted(item.instance_id for item in items) == [f"i{n}" for n in range(5)]

    @pytest.mark.anyio
    async def test_unknown_token_is_rejected_and_the_real_lock_stays_held(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        with pytest.raises(LockLostError):
            await provider.commit_turn(
                dataclasses.replace(turn_commit(item), lock_token=BOGUS_TOKEN)
            )
        with pytest.raises(LockLostError):
            await provider.abandon_turn(AbandonRequest(lock_token=BOGUS_TOKEN))

        assert await try_turn(provider, self.lock_timeout) is None
        await provider.commit_turn(turn_commit(item))

    @pytest.mark.anyio
    async def test_concurrent_fetchers_get_each_instance_exactly_once(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        ids = [f"i{n:02}" for n in range(10)]
        for instance_id in ids:
            await provider.start_orchestration(start_message(instance_id))
        fetched: list[str] = []

        async def fetch() -> None:
            item = await try_turn(provider, self.lock_timeout)
            if item is not None:
                fetched.append(item.instance_id)

        async with anyio.create_task_group() as tg:
            for _ in ids:
                tg.start_soon(fetch)

        assert sorted(fetched) == ids

    @pytest.mark.anyio
    async def test_concurrent_fetches_of_one_instance_have_exactly_one_winner(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1"))
        winners: list[str] = []

        async def fetch() -> None:
            item = await try_turn(provider, self.lock_timeout)
            if item is not None:
                winners.append(item.lock_token)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(fetch)

        assert len(winners) == 1
        assert await try_turn(provider, self.lock_timeout) is None

    @pytest.mark.anyio
    async def test_many_workers_never_process_an_instance_twice(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        ids = [f"i{n:02}" for n in range(20)]
        for instance_id in ids:
            await provider.start_orchestration(start_message(instance_id))
        processed: list[str] = []

        async def worker() -> None:
            while True:
                try:
                    item = await provider.fetch_turn(turn_request(self.lock_timeout))
                    if item is None:
                        return
                    processed.append(item.instance_id)
                    await anyio.lowlevel.checkpoint()
                    await provider.commit_turn(turn_commit(item))
                except ProviderError as exc:
                    if not exc.retryable:
                        raise

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(worker)

        assert sorted(processed) == ids

    @pytest.mark.anyio
    async def test_messages_arriving_while_locked_join_the_batch_after_expiry(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        for name in ("a", "b", "c"):
            await provider.enqueue_orchestrator_message(external_event("i1", name))
        assert await try_turn(provider, self.lock_timeout) is None

        await clock.advance(self.lock_timeout + 1)

        item = await must_turn(provider, self.lock_timeout, "i1")
        assert kinds(item.messages) == ["StartOrchestrationMessage"] + ["RaiseEventMessage"] * 3
        assert event_names(item.messages) == ["a", "b", "c"]

    @pytest.mark.anyio
    async def test_lock_on_one_instance_does_not_block_another(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "a")
        await create_instance(provider, "b")
        await lock_next_turn(provider, "a", lock_timeout=self.lock_timeout)

        first_b = await lock_next_turn(provider, "b", lock_timeout=self.lock_timeout)
        await provider.commit_turn(turn_commit(first_b))
        second_b = await lock_next_turn(provider, "b", lock_timeout=self.lock_timeout)

        assert second_b.lock_token != first_b.lock_token

    @pytest.mark.anyio
    async def test_message_arriving_during_a_turn_survives_its_commit(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.enqueue_orchestrator_message(external_event("i1", "late"))

        await provider.commit_turn(turn_commit(item, events=raised(1)))

        after = await must_turn(provider, self.lock_timeout, "i1")
        assert event_names(after.messages) == ["late"]
        assert after.delivery_count == 1

    @pytest.mark.anyio
    async def test_commit_deletes_only_the_messages_of_its_batch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(external_event("i1", "one"))
        item = await must_turn(provider, self.lock_timeout, "i1")
        await provider.enqueue_orchestrator_message(external_event("i1", "two"))
        await provider.enqueue_orchestrator_message(external_event("i1", "three"))

        await provider.commit_turn(turn_commit(item))

        after = await must_turn(provider, self.lock_timeout, "i1")
        assert event_names(after.messages) == ["two", "three"]

    @pytest.mark.anyio
    async def test_fetch_serves_the_instance_with_the_oldest_visible_message(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "later")
        await provider.enqueue_orchestrator_message(timer("later", 1, clock.now_ms() + 60_000))
        await provider.start_orchestration(start_message("b"))
        await clock.advance(1)
        await provider.start_orchestration(start_message("a"))
        await provider.enqueue_orchestrator_message(external_event("later"))

        order = [(await must_turn(provider, self.lock_timeout)).instance_id for _ in range(3)]

        assert order == ["b", "a", "later"]

    @pytest.mark.anyio
    async def test_locked_instance_with_the_oldest_message_does_not_block_others(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await start_and_lock(provider, "busy", lock_timeout=self.lock_timeout)
        await provider.enqueue_orchestrator_message(external_event("busy"))
        await provider.start_orchestration(start_message("idle"))

        item = await must_turn(provider, self.lock_timeout)

        assert item.instance_id == "idle"


class LockExpiryContract(ContractBase):
    """Locks expire unless renewed; expiry lets the next fetch take over with a new token."""

    @pytest.mark.anyio
    async def test_expired_lock_is_taken_over_and_the_old_commit_fails(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        stale = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout + 1)

        fresh = await must_turn(provider, self.lock_timeout, "i1")

        assert fresh.lock_token != stale.lock_token
        with pytest.raises(LockLostError):
            await provider.commit_turn(turn_commit(stale))
        await provider.commit_turn(turn_commit(fresh))
        assert len(await provider.read_history("i1")) == 1

    @pytest.mark.anyio
    async def test_taken_over_token_can_neither_abandon_nor_renew(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        stale = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout + 1)
        fresh = await must_turn(provider, self.lock_timeout, "i1")

        with pytest.raises(LockLostError):
            await provider.abandon_turn(AbandonRequest(lock_token=stale.lock_token))
        with pytest.raises(LockLostError):
            await provider.renew_turn_lock(
                RenewRequest(lock_token=stale.lock_token, extend_for=self.lock_timeout)
            )

        assert await try_turn(provider, self.lock_timeout) is None
        await provider.commit_turn(turn_commit(fresh))

    @pytest.mark.anyio
    async def test_fetches_fail_while_the_lock_lives_and_succeed_after_expiry(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        for _ in range(4):
            await clock.advance(self.lock_timeout * 0.2)
            assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(self.lock_timeout * 0.2 + 1)

        assert await try_turn(provider, self.lock_timeout) is not None

    @pytest.mark.anyio
    async def test_commit_before_the_lock_expires_succeeds(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout * 0.9)

        await provider.commit_turn(turn_commit(item))

        assert await provider.list_executions("i1") == [1]

    @pytest.mark.anyio
    async def test_abandon_releases_the_lock_immediately(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))

        again = await must_turn(provider, self.lock_timeout, "i1")
        assert again.lock_token != item.lock_token
        assert again.messages == item.messages

    @pytest.mark.anyio
    async def test_renewed_turn_lock_outlives_its_original_expiry(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout * 0.6)

        await provider.renew_turn_lock(
            RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
        )
        await clock.advance(self.lock_timeout * 0.6)

        assert await try_turn(provider, self.lock_timeout) is None
        await provider.commit_turn(turn_commit(item))

    @pytest.mark.anyio
    async def test_an_expired_turn_lock_nobody_took_over_renews_and_commits(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # Expiry only lets the next fetch take over; until one does, the token still fences.
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout + 1)

        await provider.renew_turn_lock(
            RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
        )
        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(self.lock_timeout + 1)
        await provider.commit_turn(turn_commit(item))

        assert await provider.list_executions("i1") == [1]

    @pytest.mark.anyio
    async def test_renewing_or_abandoning_after_commit_raises_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.commit_turn(turn_commit(item))

        with pytest.raises(LockLostError):
            await provider.renew_turn_lock(
                RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
            )
        with pytest.raises(LockLostError):
            await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))

    @pytest.mark.anyio
    async def test_abandoning_twice_raises_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))

        with pytest.raises(LockLostError):
            await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))

    @pytest.mark.anyio
    async def test_abandon_with_delay_hides_the_batch_until_the_delay_passes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token, delay=2.0))

        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(1.9)
        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(0.2)
        assert (await must_turn(provider, self.lock_timeout, "i1")).messages == item.messages

    @pytest.mark.anyio
    async def test_abandon_with_delay_leaves_a_later_timer_at_its_own_time(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        fire_at = clock.now_ms() + 60_000
        await provider.enqueue_orchestrator_message(timer("i1", 1, fire_at))
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token, delay=1.0))
        await clock.advance(1.1)

        retry = await must_turn(provider, self.lock_timeout, "i1")
        assert kinds(retry.messages) == ["RaiseEventMessage"]
        await provider.commit_turn(turn_commit(retry))
        await clock.advance(50)
        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(10)
        assert kinds((await must_turn(provider, self.lock_timeout, "i1")).messages) == [
            "TimerFiredMessage"
        ]

    @pytest.mark.anyio
    async def test_abandon_with_delay_also_holds_back_messages_that_arrived_meanwhile(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.enqueue_orchestrator_message(external_event("i1", "late"))

        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token, delay=2.0))

        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(2.1)
        retry = await must_turn(provider, self.lock_timeout, "i1")
        assert event_names(retry.messages) == ["poke", "late"]

    @pytest.mark.anyio
    async def test_lock_expiry_makes_messages_committed_elsewhere_wait_no_longer(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "target")
        await lock_next_turn(provider, "target", lock_timeout=self.lock_timeout)
        sender = await start_and_lock(provider, "sender", lock_timeout=self.lock_timeout)
        await provider.commit_turn(
            turn_commit(sender, orchestrator_messages=[external_event("target", "hello")])
        )
        assert await try_turn(provider, self.lock_timeout) is None

        await clock.advance(self.lock_timeout + 1)

        item = await must_turn(provider, self.lock_timeout, "target")
        assert event_names(item.messages) == ["poke", "hello"]
