"""Contract: committing and fetching the next work in one call (``..._and_fetch_...``).

The runtime hands the activities its turns just scheduled to its own workers, and the turns its
workers' results unblock back to its orchestrators, through these two calls. Each must behave
exactly like the pair of calls it replaces, with the fetch never waiting for work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import anyio
import pytest

from ..._errors import LockLostError
from ..._history import ActivityCompleted, ActivityScheduled, HistoryEvent
from ..._messages import ActivityResultMessage, ActivityTask
from ...providers import Provider
from ...providers._types import (
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    TagFilter,
    TurnCommit,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_result,
    activity_task,
    create_instance,
    external_event,
    fetch_all_activities,
    idle_commit,
    lock_instance,
    raw,
    schedule_activities,
    seqs,
    start_and_lock,
    turn_commit,
    turn_request,
)
from ._helpers import BOGUS_TOKEN, REAL_TIME_LIMIT, kinds, try_turn


def _scheduling(item: OrchestrationWorkItem, tasks: Sequence[ActivityTask]) -> TurnCommit:
    """``item``'s turn, recording and scheduling ``tasks`` as a runtime would."""
    events: list[HistoryEvent] = [
        ActivityScheduled(event_id=0, ts=0, seq=t.seq, name=t.name, tag=t.tag, session=t.session)
        for t in tasks
    ]
    return turn_commit(item, events=events, activity_tasks=tasks)


def _keys(items: Sequence[ActivityWorkItem]) -> list[tuple[str, int]]:
    return [(item.task.instance_id, item.task.seq) for item in items]


class CommitFetchContract(ContractBase):
    """``commit_turns_and_fetch_activities`` and ``complete_activities_and_fetch_turns``."""

    def _activities(
        self, max_items: int = 10, *, tag_filter: TagFilter | None = None
    ) -> FetchActivityRequest:
        request = activity_request(self.lock_timeout, tag_filter=tag_filter)
        return dataclasses.replace(request, max_items=max_items)

    def _turns(
        self,
        *,
        poll_timeout: float = 0.0,
        cached_histories: Mapping[str, tuple[int, int]] | None = None,
    ) -> FetchTurnRequest:
        return dataclasses.replace(
            turn_request(self.lock_timeout),
            max_items=10,
            poll_timeout=poll_timeout,
            cached_histories=cached_histories or {},
        )

    async def _take_activity(self, provider: Provider, instance_id: str) -> ActivityWorkItem:
        item = await provider.fetch_activity(activity_request(self.lock_timeout))
        assert item is not None and item.task.instance_id == instance_id
        return item

    # -- commit_turns_and_fetch_activities ------------------------------------------------------

    @pytest.mark.anyio
    async def test_commit_and_fetch_applies_the_turn_and_locks_the_activities_it_scheduled(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "h1")
        tasks = [activity_task("h1", seq, input=seq) for seq in (1, 2)]

        results, fetched = await provider.commit_turns_and_fetch_activities(
            [_scheduling(item, tasks)], self._activities()
        )

        assert results == [None]
        history = await provider.read_history("h1")
        assert [e.seq for e in history if isinstance(e, ActivityScheduled)] == [1, 2]
        assert [f.task for f in fetched] == tasks
        assert [f.delivery_count for f in fetched] == [1, 1]
        assert len({f.lock_token for f in fetched}) == 2
        # They are locked: a plain fetch must not hand them out a second time.
        assert await provider.fetch_activities(self._activities()) == []
        await provider.complete_activity(
            ActivityCommit(lock_token=fetched[0].lock_token, result=activity_result(tasks[0], 7))
        )
        turn = await try_turn(provider, self.lock_timeout)
        assert turn is not None and kinds(turn.messages) == ["ActivityResultMessage"]

    @pytest.mark.anyio
    async def test_commit_and_fetch_takes_at_most_max_items_and_leaves_the_rest_queued(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "h2")
        tasks = [activity_task("h2", seq) for seq in (1, 2, 3)]

        results, fetched = await provider.commit_turns_and_fetch_activities(
            [_scheduling(item, tasks)], self._activities(max_items=2)
        )

        assert results == [None]
        assert seqs(fetched) == [1, 2]
        assert seqs(await provider.fetch_activities(self._activities())) == [3]

    @pytest.mark.anyio
    async def test_commit_and_fetch_reports_a_stale_commit_and_fetches_only_what_applied(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        live = await start_and_lock(provider, "h3")
        other = await start_and_lock(provider, "h4")
        stale = dataclasses.replace(
            _scheduling(other, [activity_task("h4", 1)]), lock_token=BOGUS_TOKEN
        )

        results, fetched = await provider.commit_turns_and_fetch_activities(
            [stale, _scheduling(live, [activity_task("h3", 1)])], self._activities()
        )

        assert isinstance(results[0], LockLostError)
        assert results[1] is None
        assert _keys(fetched) == [("h3", 1)]
        # The stale commit changed nothing: no history, no work item, h4 still locked.
        assert await provider.read_history("h4") == []
        assert await fetch_all_activities(provider, self._activities()) == []
        assert await provider.commit_turns([turn_commit(other)]) == [None]

    @pytest.mark.anyio
    async def test_commit_and_fetch_returns_only_activities_the_request_accepts(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "h5")
        tasks = [
            activity_task("h5", 1, tag="gpu"),
            activity_task("h5", 2, session="s1"),
            activity_task("h5", 3),
        ]

        _, fetched = await provider.commit_turns_and_fetch_activities(
            [_scheduling(item, tasks)], self._activities()
        )

        # The default request takes neither tagged items nor session items; both stay queued
        # for the workers whose request does accept them.
        assert seqs(fetched) == [3]
        gpu = self._activities(
            tag_filter=TagFilter(tags=frozenset({"gpu"}), include_untagged=False)
        )
        assert seqs(await provider.fetch_activities(gpu)) == [1]
        owned = await provider.fetch_activity(activity_request(session_owner="A"))
        assert owned is not None and owned.task.seq == 2

    @pytest.mark.anyio
    async def test_commit_and_fetch_also_returns_older_work_oldest_first(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "old", [activity_task("old", 1)])
        await clock.advance(1)
        item = await start_and_lock(provider, "new")

        _, fetched = await provider.commit_turns_and_fetch_activities(
            [_scheduling(item, [activity_task("new", 1)])], self._activities(max_items=1)
        )

        # Same order as fetch_activities: the older item first, even over the commit's own.
        assert _keys(fetched) == [("old", 1)]
        assert _keys(await provider.fetch_activities(self._activities())) == [("new", 1)]

    @pytest.mark.anyio
    async def test_commit_and_fetch_with_no_commits_is_a_plain_fetch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "h7", [activity_task("h7", 1)])

        results, fetched = await provider.commit_turns_and_fetch_activities([], self._activities())

        assert results == []
        assert _keys(fetched) == [("h7", 1)]
        assert fetched[0].delivery_count == 1

    @pytest.mark.anyio
    async def test_commit_and_fetch_never_waits_for_work(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # Virtual time never moves here: a fetch that honoured poll_timeout would hang.
        request = dataclasses.replace(self._activities(), poll_timeout=30.0)

        with anyio.fail_after(REAL_TIME_LIMIT):
            assert await provider.commit_turns_and_fetch_activities([], request) == ([], [])

    # -- complete_activities_and_fetch_turns ----------------------------------------------------

    @pytest.mark.anyio
    async def test_complete_and_fetch_locks_the_instance_with_its_result_in_the_batch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("a1", 1)
        await schedule_activities(provider, "a1", [task])
        length = len(await provider.read_history("a1"))
        item = await self._take_activity(provider, "a1")

        results, turns = await provider.complete_activities_and_fetch_turns(
            [ActivityCommit(lock_token=item.lock_token, result=activity_result(task, 42))],
            self._turns(),
        )

        assert results == [None]
        assert [turn.instance_id for turn in turns] == ["a1"]
        turn = turns[0]
        assert turn.messages == [
            ActivityResultMessage(instance_id="a1", execution_id=1, seq=1, result=raw(42))
        ]
        assert turn.delivery_count == 1
        assert len(turn.history) == length
        # The turn is locked: no plain fetch gets it, and its owner can commit it.
        assert await try_turn(provider, self.lock_timeout) is None
        completed = ActivityCompleted(event_id=0, ts=0, seq=1, result=raw(42))
        await provider.commit_turn(turn_commit(turn, events=[completed]))
        assert len(await provider.read_history("a1")) == length + 1
        assert await try_turn(provider, self.lock_timeout) is None

    @pytest.mark.anyio
    async def test_complete_and_fetch_skips_an_instance_locked_elsewhere_but_applies_the_result(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("a2", 1)
        await schedule_activities(provider, "a2", [task])
        item = await self._take_activity(provider, "a2")
        await provider.enqueue_orchestrator_message(external_event("a2"))
        busy = await lock_instance(provider, "a2", lock_timeout=self.lock_timeout)

        results, turns = await provider.complete_activities_and_fetch_turns(
            [ActivityCommit(lock_token=item.lock_token, result=activity_result(task))],
            self._turns(),
        )

        assert results == [None]
        assert turns == []
        # The result arrived during the other turn, so that turn's commit leaves it queued.
        await provider.commit_turn(idle_commit(busy))
        turn = await try_turn(provider, self.lock_timeout)
        assert turn is not None and turn.instance_id == "a2"
        assert kinds(turn.messages) == ["ActivityResultMessage"]

    @pytest.mark.anyio
    async def test_complete_and_fetch_reports_a_stale_completion_and_still_fetches(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tasks = {name: activity_task(name, 1) for name in ("a3", "a4")}
        for name, task in tasks.items():
            await schedule_activities(provider, name, [task])
        await self._take_activity(provider, "a3")
        live = await self._take_activity(provider, "a4")
        commits = [
            ActivityCommit(lock_token=BOGUS_TOKEN, result=activity_result(tasks["a3"])),
            ActivityCommit(lock_token=live.lock_token, result=activity_result(tasks["a4"])),
        ]

        results, turns = await provider.complete_activities_and_fetch_turns(commits, self._turns())

        assert isinstance(results[0], LockLostError)
        assert results[1] is None
        assert [turn.instance_id for turn in turns] == ["a4"]
        assert kinds(turns[0].messages) == ["ActivityResultMessage"]
        # The stale completion enqueued nothing for a3.
        assert await try_turn(provider, self.lock_timeout) is None

    @pytest.mark.anyio
    async def test_complete_and_fetch_omits_history_only_when_the_cached_copy_matches(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # As for fetch_turns, omitting is optional: "cached" may or may not come back without
        # its history, but "stale" (the caller's copy lacks an event) must be loaded in full.
        tasks = {name: activity_task(name, 1) for name in ("cached", "stale")}
        for name, task in tasks.items():
            await create_instance(provider, name, activity_tasks=[task])
        length = len(await provider.read_history("cached"))
        commits = []
        for name, task in tasks.items():
            item = await self._take_activity(provider, name)
            commits.append(ActivityCommit(lock_token=item.lock_token, result=activity_result(task)))
        cached = {"cached": (1, length), "stale": (1, length - 1)}

        results, turns = await provider.complete_activities_and_fetch_turns(
            commits, self._turns(cached_histories=cached)
        )

        assert results == [None, None]
        by_id = {turn.instance_id: turn for turn in turns}
        assert sorted(by_id) == ["cached", "stale"]
        hit = by_id["cached"]
        if hit.history_omitted:
            assert hit.history == [] and hit.kv_snapshot == {}
        else:
            assert len(hit.history) == length
        assert not by_id["stale"].history_omitted
        assert len(by_id["stale"].history) == length
        assert all(kinds(turn.messages) == ["ActivityResultMessage"] for turn in turns)

    @pytest.mark.anyio
    async def test_complete_and_fetch_never_waits_for_work(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # Virtual time never moves here: a fetch that honoured poll_timeout would hang.
        request = self._turns(poll_timeout=30.0)

        with anyio.fail_after(REAL_TIME_LIMIT):
            assert await provider.complete_activities_and_fetch_turns([], request) == ([], [])
