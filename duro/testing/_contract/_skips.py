"""Contract: work a fetch is asked to skip is left for other fetchers (rolling deployments)."""

from __future__ import annotations

import dataclasses

import pytest

from ...providers import Provider
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_task,
    create_instance,
    external_event,
    fetch_all_activities,
    schedule_activities,
    seqs,
    turn_request,
)


class SkipContract(ContractBase):
    """``skip_instances`` and ``skip_activities``: the store locks none of them, and a fetch
    without them still finds them (a worker that lacks the code leaves work to the others)."""

    @pytest.mark.anyio
    async def test_turn_fetch_leaves_skipped_instances_for_other_fetches(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        for instance_id in ("s1", "s2"):
            await create_instance(provider, instance_id)
        for instance_id in ("s1", "s2"):
            await provider.enqueue_orchestrator_message(external_event(instance_id))
        skipping = dataclasses.replace(
            turn_request(self.lock_timeout), skip_instances=("s1",), max_items=2
        )

        first = await provider.fetch_turns(skipping)
        again = await provider.fetch_turns(skipping)
        other = await provider.fetch_turns(turn_request(self.lock_timeout))

        assert [item.instance_id for item in first] == ["s2"]
        assert again == []
        assert [item.instance_id for item in other] == ["s1"]

    @pytest.mark.anyio
    async def test_activity_fetch_leaves_skipped_activities_for_other_fetches(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tasks = [activity_task("a1", seq) for seq in (1, 2, 3)]
        await schedule_activities(provider, "a1", tasks)
        skipping = dataclasses.replace(
            activity_request(self.lock_timeout), skip_activities=(("a1", 1, 2),)
        )

        first = await fetch_all_activities(provider, skipping)
        other = await fetch_all_activities(provider, activity_request(self.lock_timeout))

        assert seqs(first) == [1, 3]
        assert seqs(other) == [2]
