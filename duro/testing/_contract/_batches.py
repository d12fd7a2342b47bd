"""Contract: taking and committing turns and activity work items in batches."""

from __future__ import annotations

import dataclasses

import pytest

from ..._errors import LockLostError
from ...providers import Provider
from ...providers._types import ActivityCommit
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_result,
    activity_task,
    create_instance,
    external_event,
    idle_commit,
    schedule_activities,
    seqs,
    turn_request,
)


class ActivityBatchContract(ContractBase):
    @pytest.mark.anyio
    async def test_fetch_activities_locks_up_to_max_items_oldest_first_with_distinct_tokens(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "b1", [activity_task("b1", s) for s in (1, 2, 3)])
        request = dataclasses.replace(activity_request(self.lock_timeout), max_items=2)

        first = await provider.fetch_activities(request)
        rest = await provider.fetch_activities(request)

        assert seqs(first) == [1, 2]
        assert seqs(rest) == [3]
        assert len({item.lock_token for item in first + rest}) == 3
        assert await provider.fetch_activities(request) == []

    @pytest.mark.anyio
    async def test_fetch_activities_on_an_empty_queue_returns_an_empty_list(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        request = dataclasses.replace(activity_request(self.lock_timeout), max_items=5)
        assert await provider.fetch_activities(request) == []

    @pytest.mark.anyio
    async def test_complete_activities_applies_each_commit_and_reports_stale_ones(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tasks = [activity_task("b2", s) for s in (1, 2)]
        await schedule_activities(provider, "b2", tasks)
        request = dataclasses.replace(activity_request(self.lock_timeout), max_items=2)
        items = await provider.fetch_activities(request)
        commits = [
            ActivityCommit(lock_token=items[0].lock_token, result=activity_result(tasks[0], "a")),
            ActivityCommit(lock_token="no-such-token", result=activity_result(tasks[1], "x")),
            ActivityCommit(lock_token=items[1].lock_token, result=activity_result(tasks[1], "b")),
        ]

        results = await provider.complete_activities(commits)

        assert results[0] is None and results[2] is None
        assert isinstance(results[1], LockLostError)
        turn = await provider.fetch_turn(turn_request())
        assert turn is not None
        delivered = [getattr(m, "seq", None) for m in turn.messages]
        assert delivered == [1, 2], "the stale commit must enqueue nothing"

    @pytest.mark.anyio
    async def test_complete_activities_with_no_commits_does_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        assert await provider.complete_activities([]) == []


class TurnBatchContract(ContractBase):
    @pytest.mark.anyio
    async def test_fetch_turns_locks_distinct_instances_up_to_max_items(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        names = ("t1", "t2", "t3")
        for name in names:
            await create_instance(provider, name)
        for name in names:
            await provider.enqueue_orchestrator_message(external_event(name))
        request = dataclasses.replace(turn_request(self.lock_timeout), max_items=2)

        first = await provider.fetch_turns(request)
        rest = await provider.fetch_turns(request)

        assert len(first) == 2 and len(rest) == 1
        locked = [item.instance_id for item in first + rest]
        assert sorted(locked) == ["t1", "t2", "t3"]
        assert len({item.lock_token for item in first + rest}) == 3
        assert await provider.fetch_turns(request) == []

    @pytest.mark.anyio
    async def test_commit_turns_applies_each_commit_and_a_stale_one_changes_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        for name in ("u1", "u2"):
            await create_instance(provider, name)
        for name in ("u1", "u2"):
            await provider.enqueue_orchestrator_message(external_event(name))
        request = dataclasses.replace(turn_request(self.lock_timeout), max_items=2)
        items = {item.instance_id: item for item in await provider.fetch_turns(request)}
        before = len(await provider.read_history("u2"))
        stale = dataclasses.replace(idle_commit(items["u2"]), lock_token="no-such-token")

        results = await provider.commit_turns([idle_commit(items["u1"]), stale])

        assert results[0] is None
        assert isinstance(results[1], LockLostError)
        assert len(await provider.read_history("u2")) == before
        # u1's message was consumed; u2 is still locked by its real token.
        assert await provider.fetch_turn(turn_request(self.lock_timeout)) is None
        assert await provider.commit_turns([idle_commit(items["u2"])]) == [None]
