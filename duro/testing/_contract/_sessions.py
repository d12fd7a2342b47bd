"""Contract: activity sessions (affinity claimed on fetch, leases, idling, orphan cleanup)."""

from __future__ import annotations

from typing import Final

import anyio
import pytest

from ..._messages import ActivityTask
from ...providers import Provider
from ...providers._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    RenewRequest,
    SessionRenewal,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_task,
    continue_as_new,
    fetch_all_activities,
    next_turn,
    schedule_activities,
    seqs,
)

SESSION_LEASE: Final = 30.0
"""Session lock timeout the tests claim sessions with (seconds)."""
LONG_IDLE: Final = 3600.0
"""An idle timeout no test session reaches."""


def _task(seq: int, session: str | None = "s1") -> ActivityTask:
    return activity_task("i1", seq, session=session)


class SessionContract(ContractBase):
    """Work items with a session go to the owner that claimed the session, while it is live."""

    async def _fetch(
        self,
        provider: Provider,
        owner: str | None,
        *,
        lock_timeout: float | None = None,
        lease: float = SESSION_LEASE,
    ) -> ActivityWorkItem | None:
        return await provider.fetch_activity(
            activity_request(
                self.lock_timeout if lock_timeout is None else lock_timeout,
                session_owner=owner,
                session_lock_timeout=lease,
            )
        )

    async def _take(
        self,
        provider: Provider,
        owner: str | None,
        *,
        lock_timeout: float | None = None,
        lease: float = SESSION_LEASE,
    ) -> ActivityWorkItem:
        item = await self._fetch(provider, owner, lock_timeout=lock_timeout, lease=lease)
        assert item is not None, f"expected {owner!r} to be served a work item"
        return item

    async def _done(self, provider: Provider, item: ActivityWorkItem) -> None:
        await provider.complete_activity(ActivityCommit(lock_token=item.lock_token, result=None))

    async def _renew(
        self,
        provider: Provider,
        *owners: str,
        extend_for: float = SESSION_LEASE,
        idle_timeout: float = LONG_IDLE,
    ) -> int:
        return await provider.renew_sessions(
            SessionRenewal(owner_ids=owners, extend_for=extend_for, idle_timeout=idle_timeout)
        )

    # -- routing and claiming ---------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_session_items_are_only_served_to_session_owners(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2, session=None)])

        assert seqs(await fetch_all_activities(provider, activity_request())) == [2]
        item = await self._take(provider, "A")
        assert (item.task.seq, item.task.session) == (1, "s1")

    @pytest.mark.anyio
    async def test_plain_items_are_served_to_session_owners_too(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1, session=None)])

        assert (await self._take(provider, "A")).task.seq == 1

    @pytest.mark.anyio
    async def test_unclaimed_sessions_are_all_served_to_an_owner(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(
            provider,
            "i1",
            [_task(1, "s1"), _task(2, "s2"), _task(3, None), _task(4, "s3")],
        )

        served = await fetch_all_activities(provider, activity_request(session_owner="A"))

        assert seqs(served) == [1, 2, 3, 4]

    @pytest.mark.anyio
    async def test_fetch_claims_the_session_against_other_owners(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2)])

        await self._take(provider, "A")

        assert await self._fetch(provider, "B") is None

    @pytest.mark.anyio
    async def test_owner_keeps_its_session_after_completing_an_item(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2), _task(3)])
        await self._done(provider, await self._take(provider, "A"))

        assert await self._fetch(provider, "B") is None
        assert (await self._take(provider, "A")).task.seq == 2

    @pytest.mark.anyio
    async def test_owner_blocked_from_a_session_still_gets_other_work(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(
            provider, "i1", [_task(1, "s1"), _task(2, "s1"), _task(3, "s2"), _task(4, None)]
        )
        await self._take(provider, "A")

        served = await fetch_all_activities(provider, activity_request(session_owner="B"))

        assert seqs(served) == [3, 4]

    @pytest.mark.anyio
    async def test_different_owners_keep_their_own_sessions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(
            provider, "i1", [_task(1, "s1"), _task(2, "s2"), _task(3, "s1"), _task(4, "s2")]
        )
        assert (await self._take(provider, "A")).task.seq == 1
        assert (await self._take(provider, "B")).task.seq == 2

        assert seqs(await fetch_all_activities(provider, activity_request(session_owner="A"))) == [
            3
        ]
        assert seqs(await fetch_all_activities(provider, activity_request(session_owner="B"))) == [
            4
        ]

    @pytest.mark.anyio
    async def test_callers_sharing_an_owner_id_share_its_sessions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2), _task(3)])

        first = await self._take(provider, "node-1")
        second = await self._take(provider, "node-1")

        assert (first.task.seq, second.task.seq) == (1, 2)
        assert await self._fetch(provider, "node-2") is None

    @pytest.mark.anyio
    async def test_session_items_are_delivered_in_order(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2, "s2"), _task(3)])
        await clock.advance(1)
        await next_turn(provider, "i1", activity_tasks=[_task(4)])

        order = []
        while (item := await self._fetch(provider, "A")) is not None:
            order.append(item.task.seq)
            await self._done(provider, item)

        assert order == [1, 2, 3, 4]

    @pytest.mark.anyio
    async def test_concurrent_claims_of_one_session_have_one_winner(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(seq) for seq in range(1, 5)])
        served: list[tuple[str, int]] = []

        async def fetch(owner: str) -> None:
            item = await self._fetch(provider, owner)
            if item is not None:
                served.append((owner, item.task.seq))

        async with anyio.create_task_group() as group:
            for owner in ("A", "B", "C", "A", "B", "C"):
                group.start_soon(fetch, owner)

        assert served, "some owner must win the session"
        assert len({owner for owner, _ in served}) == 1
        assert len({seq for _, seq in served}) == len(served)

    # -- leases and takeover ----------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_expired_session_can_be_taken_over_by_another_owner(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2), _task(3)])
        await self._done(provider, await self._take(provider, "A"))

        await clock.advance(SESSION_LEASE + 1)

        assert (await self._take(provider, "B")).task.seq == 2
        assert await self._fetch(provider, "A") is None

    @pytest.mark.anyio
    async def test_original_owner_can_reclaim_its_expired_session(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2), _task(3)])
        await self._done(provider, await self._take(provider, "A"))
        await clock.advance(SESSION_LEASE + 1)

        assert (await self._take(provider, "A")).task.seq == 2
        assert await self._fetch(provider, "B") is None

    @pytest.mark.anyio
    async def test_expired_activity_lock_redelivers_to_the_session_owner(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        first = await self._take(provider, "A")

        await clock.advance(self.lock_timeout + 1)

        assert await self._fetch(provider, "B") is None
        again = await self._take(provider, "A")
        assert (again.task.seq, again.delivery_count) == (1, 2)
        assert again.lock_token != first.lock_token

    @pytest.mark.anyio
    async def test_in_flight_item_can_complete_after_its_session_lapsed(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2)])
        long_lock = SESSION_LEASE * 4
        in_flight = await self._take(provider, "A", lock_timeout=long_lock)

        await clock.advance(SESSION_LEASE + 1)

        assert (await self._take(provider, "B")).task.seq == 2
        await self._done(provider, in_flight)

    @pytest.mark.anyio
    async def test_new_owner_gets_the_redelivery_when_both_leases_lapsed(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        await self._take(provider, "A", lock_timeout=self.lock_timeout)

        await clock.advance(max(self.lock_timeout, SESSION_LEASE) + 1)

        again = await self._take(provider, "B")
        assert (again.task.seq, again.delivery_count) == (1, 2)
        assert await self._fetch(provider, "A") is None

    @pytest.mark.anyio
    async def test_abandoned_session_item_returns_to_its_owner(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        first = await self._take(provider, "A")

        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token))

        assert await self._fetch(provider, "B") is None
        again = await self._take(provider, "A")
        assert (again.task.seq, again.delivery_count) == (1, 2)
        await self._done(provider, again)
        assert await self._fetch(provider, "A") is None

    @pytest.mark.anyio
    async def test_session_survives_continue_as_new(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        await self._done(provider, await self._take(provider, "A"))

        await continue_as_new(
            provider, "i1", activity_tasks=[activity_task("i1", 1, execution_id=2, session="s1")]
        )

        assert await self._fetch(provider, "B") is None
        item = await self._take(provider, "A")
        assert (item.task.execution_id, item.task.session) == (2, "s1")

    # -- renewal ----------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_renew_sessions_counts_the_owners_live_sessions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1, "s1"), _task(2, "s2")])
        await self._take(provider, "A")
        assert await self._renew(provider, "A") == 1

        await self._take(provider, "A")

        assert await self._renew(provider, "A") == 2

    @pytest.mark.anyio
    async def test_renew_sessions_for_an_owner_without_sessions_returns_zero(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        await self._take(provider, "A")

        assert await self._renew(provider, "B") == 0
        assert await self._renew(provider) == 0

    @pytest.mark.anyio
    async def test_renewed_session_outlives_its_original_lease(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2)])
        await self._done(provider, await self._take(provider, "A"))

        await clock.advance(SESSION_LEASE * 0.6)
        assert await self._renew(provider, "A") == 1
        await clock.advance(SESSION_LEASE * 0.6)

        assert await self._fetch(provider, "B") is None
        assert (await self._take(provider, "A")).task.seq == 2

    @pytest.mark.anyio
    async def test_renew_sessions_extends_only_the_listed_owners(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(
            provider, "i1", [_task(1, "s1"), _task(2, "s2"), _task(3, "s1"), _task(4, "s2")]
        )
        await self._done(provider, await self._take(provider, "A"))
        await self._done(provider, await self._take(provider, "B"))

        await clock.advance(SESSION_LEASE * 0.6)
        assert await self._renew(provider, "A") == 1
        await clock.advance(SESSION_LEASE * 0.6)

        assert seqs(await fetch_all_activities(provider, activity_request(session_owner="C"))) == [
            4
        ]

    @pytest.mark.anyio
    async def test_renew_sessions_after_expiry_returns_zero(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        await self._done(provider, await self._take(provider, "A"))

        await clock.advance(SESSION_LEASE + 1)

        assert await self._renew(provider, "A") == 0

    @pytest.mark.anyio
    async def test_idle_sessions_are_not_renewed_and_lapse(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2)])
        await self._done(provider, await self._take(provider, "A"))

        await clock.advance(SESSION_LEASE * 0.6)
        assert await self._renew(provider, "A", idle_timeout=SESSION_LEASE * 0.3) == 0
        await clock.advance(SESSION_LEASE * 0.6)

        assert (await self._take(provider, "B")).task.seq == 2

    @pytest.mark.anyio
    async def test_completing_an_item_refreshes_session_activity(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1, "s1"), _task(2, "s2")])
        busy = await self._take(provider, "A", lock_timeout=SESSION_LEASE)
        await self._take(provider, "A", lock_timeout=SESSION_LEASE)

        await clock.advance(10)
        await self._done(provider, busy)
        await clock.advance(1)

        assert await self._renew(provider, "A", idle_timeout=5) == 1

    @pytest.mark.anyio
    async def test_renewing_an_item_lock_refreshes_session_activity(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1, "s1"), _task(2, "s2")])
        busy = await self._take(provider, "A", lock_timeout=SESSION_LEASE)
        await self._take(provider, "A", lock_timeout=SESSION_LEASE)

        await clock.advance(10)
        await provider.renew_activity_lock(
            RenewRequest(lock_token=busy.lock_token, extend_for=SESSION_LEASE)
        )
        await clock.advance(1)

        assert await self._renew(provider, "A", idle_timeout=5) == 1

    # -- orphan cleanup ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_cleanup_removes_expired_sessions_without_items(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1, "s1"), _task(2, "s2")])
        await self._done(provider, await self._take(provider, "A"))
        await self._done(provider, await self._take(provider, "A"))
        await clock.advance(SESSION_LEASE + 1)

        assert await provider.cleanup_orphaned_sessions(SESSION_LEASE) == 2
        assert await provider.cleanup_orphaned_sessions(SESSION_LEASE) == 0

    @pytest.mark.anyio
    async def test_cleanup_keeps_expired_sessions_with_pending_items(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1), _task(2)])
        await self._done(provider, await self._take(provider, "A"))
        await clock.advance(SESSION_LEASE + 1)

        assert await provider.cleanup_orphaned_sessions(SESSION_LEASE) == 0
        assert (await self._take(provider, "B")).task.seq == 2

    @pytest.mark.anyio
    async def test_cleanup_keeps_live_sessions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        await self._done(provider, await self._take(provider, "A"))

        assert await provider.cleanup_orphaned_sessions(SESSION_LEASE) == 0

        await next_turn(provider, "i1", activity_tasks=[_task(2)])
        assert await self._fetch(provider, "B") is None
        assert (await self._take(provider, "A")).task.seq == 2

    @pytest.mark.anyio
    async def test_new_item_recreates_a_cleaned_up_session(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [_task(1)])
        await self._done(provider, await self._take(provider, "A"))
        await clock.advance(SESSION_LEASE + 1)
        assert await provider.cleanup_orphaned_sessions(SESSION_LEASE) == 1

        await next_turn(provider, "i1", activity_tasks=[_task(2), _task(3)])

        assert (await self._take(provider, "B")).task.seq == 2
        assert await self._fetch(provider, "A") is None
        assert await self._renew(provider, "B") == 1
