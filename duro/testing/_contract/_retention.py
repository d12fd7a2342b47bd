"""Contract: what bulk retention and instance trees read (execution records, listing by
completion time and execution count, deleting while paging)."""

from __future__ import annotations

import dataclasses

import pytest

from ..._status import State
from ...providers import Provider
from ...providers._types import (
    DeleteRequest,
    ExecutionStatus,
    InstanceQuery,
    PruneRequest,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    continue_as_new,
    create_executions,
    create_instance,
    next_turn,
    start_message,
)


class RetentionContract(ContractBase):
    """``read_executions``, and the ``list_instances`` filters bulk retention pages with."""

    @pytest.mark.anyio
    async def test_read_executions_reports_status_times_and_event_counts(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        started = clock.now_ms()
        await create_instance(provider, "i1")
        await clock.advance(2)
        await continue_as_new(provider, "i1")
        continued = clock.now_ms()
        await clock.advance(3)
        await next_turn(provider, "i1", status=ExecutionStatus.FAILED)
        failed = clock.now_ms()

        records = await provider.read_executions("i1")

        assert [(r.execution_id, r.status) for r in records] == [
            (1, ExecutionStatus.CONTINUED_AS_NEW),
            (2, ExecutionStatus.FAILED),
        ]
        first, second = records
        assert (first.started_at_ms, first.completed_at_ms) == (started, continued)
        assert (second.started_at_ms, second.completed_at_ms) == (continued, failed)
        assert first.event_count == len(await provider.read_history("i1", 1))
        assert second.event_count == len(await provider.read_history("i1", 2)) == 3
        assert await provider.list_executions("i1") == [1, 2]

    @pytest.mark.anyio
    async def test_read_executions_of_unknown_pending_and_pruned(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 3)
        await provider.prune_executions(PruneRequest(instance_id="i1", keep_last=1))
        await provider.start_orchestration(start_message("pending"))

        assert await provider.read_executions("ghost") == []
        assert await provider.read_executions("pending") == []
        [current] = await provider.read_executions("i1")
        assert (current.execution_id, current.status) == (3, ExecutionStatus.RUNNING)
        assert current.completed_at_ms is None

    @pytest.mark.anyio
    async def test_list_instances_filters_by_completion_time(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "early", status=ExecutionStatus.COMPLETED)
        await clock.advance(10)
        cutoff = clock.now_ms()
        await create_instance(provider, "late", status=ExecutionStatus.FAILED)
        await create_instance(provider, "running")

        page = await provider.list_instances(InstanceQuery(completed_before_ms=cutoff))
        later = await provider.list_instances(InstanceQuery(completed_before_ms=cutoff + 1))

        assert [r.instance_id for r in page.instances] == ["early"]
        assert [r.instance_id for r in later.instances] == ["late", "early"]

    @pytest.mark.anyio
    async def test_list_instances_filters_by_execution_id(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "once")
        await create_executions(provider, "thrice", 3)
        await provider.start_orchestration(start_message("pending"))

        page = await provider.list_instances(InstanceQuery(min_execution_id=2))

        assert [r.instance_id for r in page.instances] == ["thrice"]

    @pytest.mark.anyio
    async def test_deleting_what_a_page_listed_leaves_the_next_page_whole(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        ids = [f"i{n}" for n in range(7)]
        for instance_id in ids:
            await create_instance(provider, instance_id, status=ExecutionStatus.COMPLETED)
            await clock.advance(1)
        query = InstanceQuery(states=frozenset({State.COMPLETED}), limit=3)

        seen: list[str] = []
        while True:
            page = await provider.list_instances(query)
            for record in page.instances:
                seen.append(record.instance_id)
                await provider.delete_instance(DeleteRequest(instance_id=record.instance_id))
            if page.continuation is None:
                break
            query = dataclasses.replace(query, continuation=page.continuation)

        assert seen == list(reversed(ids))
        assert (await provider.list_instances(InstanceQuery())).instances == []
