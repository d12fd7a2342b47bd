"""Contract: heartbeat details a lock renewal keeps with an activity's work item."""

from __future__ import annotations

import pytest

from ...providers import Provider
from ...providers._types import AbandonRequest, RenewRequest
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_task,
    payload,
    schedule_activities,
)


class HeartbeatContract(ContractBase):
    """``renew_activity_lock(heartbeat_details=...)`` stores the details in the item's task,
    so its next delivery (after the worker went away) starts from them."""

    @pytest.mark.anyio
    async def test_renewal_keeps_heartbeat_details_for_the_next_delivery(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        item = await provider.fetch_activity(activity_request(lock_timeout=self.lock_timeout))
        assert item is not None and bytes(item.task.heartbeat_details) == b"null"

        details = payload({"page": 7})
        await provider.renew_activity_lock(
            RenewRequest(
                lock_token=item.lock_token,
                extend_for=self.lock_timeout,
                heartbeat_details=details,
                instance_id="i1",
            )
        )
        await provider.renew_activity_lock(
            RenewRequest(lock_token=item.lock_token, extend_for=self.lock_timeout)
        )
        await provider.abandon_activity(AbandonRequest(lock_token=item.lock_token))

        again = await provider.fetch_activity(activity_request())
        assert again is not None
        assert bytes(again.task.heartbeat_details) == details
        assert (again.task.seq, again.delivery_count) == (1, 2)

    @pytest.mark.anyio
    async def test_details_survive_a_lock_that_expires(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        item = await provider.fetch_activity(activity_request(lock_timeout=self.lock_timeout))
        assert item is not None
        await provider.renew_activity_lock(
            RenewRequest(
                lock_token=item.lock_token,
                extend_for=self.lock_timeout,
                heartbeat_details=payload([1, 2]),
                instance_id="i1",
            )
        )

        await clock.advance(self.lock_timeout + 1)
        again = await provider.fetch_activity(activity_request())

        assert again is not None and again.lock_token != item.lock_token
        assert bytes(again.task.heartbeat_details) == payload([1, 2])
