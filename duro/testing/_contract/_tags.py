"""Contract: activity tags route work items to the workers that serve them."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from ..._history import ActivityScheduled
from ...providers import Provider
from ...providers._types import (
    AbandonRequest,
    ActivityWorkItem,
    TagFilter,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_task,
    fetch_all_activities,
    schedule_activities,
    seqs,
    start_and_lock,
    turn_commit,
)


class TagContract(ContractBase):
    """Activity tags route work items to the workers whose ``TagFilter`` accepts them."""

    async def _schedule_tagged(self, provider: Provider, tags: list[str | None]) -> None:
        """Schedule one activity per tag; activity ``seq`` n carries ``tags[n - 1]``."""
        tasks = [activity_task("i1", seq, tag=tag) for seq, tag in enumerate(tags, start=1)]
        await schedule_activities(provider, "i1", tasks)

    async def _fetch_seqs(self, provider: Provider, tag_filter: TagFilter) -> list[int]:
        return seqs(await fetch_all_activities(provider, activity_request(tag_filter=tag_filter)))

    @pytest.mark.anyio
    async def test_default_filter_fetches_untagged_activities_only(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, [None, "gpu", None, "cpu"])

        assert await self._fetch_seqs(provider, TagFilter()) == [1, 3]

    @pytest.mark.anyio
    async def test_tag_filter_fetches_only_its_tags(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, [None, "gpu", "cpu", "gpu"])

        only_gpu = TagFilter(tags=frozenset({"gpu"}), include_untagged=False)

        assert await self._fetch_seqs(provider, only_gpu) == [2, 4]

    @pytest.mark.anyio
    async def test_tag_filter_with_untagged_fetches_both(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, [None, "gpu", "cpu"])

        gpu_and_default = TagFilter(tags=frozenset({"gpu"}), include_untagged=True)

        assert await self._fetch_seqs(provider, gpu_and_default) == [1, 2]

    @pytest.mark.anyio
    async def test_multi_tag_filter_fetches_every_listed_tag(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, ["gpu", "cpu", "tpu", None])

        accel = TagFilter(tags=frozenset({"gpu", "tpu"}), include_untagged=False)

        assert await self._fetch_seqs(provider, accel) == [1, 3]

    @pytest.mark.anyio
    async def test_filter_accepting_nothing_fetches_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, [None, "gpu"])

        assert await self._fetch_seqs(provider, TagFilter(include_untagged=False)) == []

    @pytest.mark.anyio
    async def test_any_filter_fetches_everything_in_order(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, ["gpu", None, "cpu"])

        assert await self._fetch_seqs(provider, TagFilter.any()) == [1, 2, 3]

    @pytest.mark.anyio
    async def test_tag_survives_abandon_and_refetch(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._schedule_tagged(provider, ["gpu"])
        gpu = activity_request(tag_filter=TagFilter(tags=frozenset({"gpu"})))
        first = await provider.fetch_activity(gpu)
        assert first is not None

        await provider.abandon_activity(AbandonRequest(lock_token=first.lock_token))

        assert await provider.fetch_activity(activity_request()) is None
        second = await provider.fetch_activity(gpu)
        assert second is not None
        assert second.task.tag == "gpu"
        assert second.delivery_count == 2

    @pytest.mark.anyio
    async def test_tag_is_kept_in_the_scheduling_history_and_the_work_item(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1")
        task = activity_task("i1", 1, name="render", tag="gpu")
        scheduled = ActivityScheduled(event_id=0, ts=0, seq=1, name="render", tag="gpu")

        await provider.commit_turn(turn_commit(item, events=[scheduled], activity_tasks=[task]))

        history = await provider.read_history("i1")
        assert [e.tag for e in history if isinstance(e, ActivityScheduled)] == ["gpu"]
        fetched = await provider.fetch_activity(activity_request(tag_filter=TagFilter.any()))
        assert fetched is not None
        assert (fetched.task.name, fetched.task.tag) == ("render", "gpu")

    @pytest.mark.anyio
    async def test_workers_with_overlapping_filters_never_double_serve(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tags: list[str | None] = [None, "gpu", "cpu", "tpu"] * 5
        await self._schedule_tagged(provider, tags)
        filters = [
            TagFilter(tags=frozenset({"gpu"}), include_untagged=False),
            TagFilter(tags=frozenset({"gpu", "cpu"}), include_untagged=False),
            TagFilter(tags=frozenset({"tpu"}), include_untagged=True),
            TagFilter.any(),
        ]
        served: list[ActivityWorkItem] = []

        async def worker(tag_filter: TagFilter) -> None:
            request = activity_request(tag_filter=tag_filter)
            while (item := await provider.fetch_activity(request)) is not None:
                assert tag_filter.accepts(item.task.tag)
                served.append(item)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as group:
            for tag_filter in filters:
                group.start_soon(worker, tag_filter)

        assert sorted(seqs(served)) == list(range(1, len(tags) + 1))
