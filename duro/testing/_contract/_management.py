"""Contract: reads and management queries (instances, histories, listings, queue depths)."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from ..._errors import LockLostError
from ..._messages import TimerFiredMessage
from ..._status import State
from ...providers import Provider
from ...providers._types import (
    ExecutionStatus,
    InstanceCountQuery,
    InstanceQuery,
    InstanceRecord,
    QueueDepths,
    ScheduledMessage,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_task,
    app_error,
    continue_as_new,
    continue_as_new_and_lock,
    create_executions,
    create_instance,
    lock_instance,
    lock_next_turn,
    next_turn,
    payload,
    start_and_lock,
    start_message,
    turn_commit,
)
from ._helpers import with_changes


async def _record(provider: Provider, instance_id: str) -> InstanceRecord:
    record = await provider.read_instance(instance_id)
    assert record is not None, f"{instance_id!r} should exist"
    return record


async def _list_ids(provider: Provider, query: InstanceQuery) -> list[str]:
    """Every page of ``query``'s results, in order."""
    ids: list[str] = []
    while True:
        page = await provider.list_instances(query)
        ids.extend(record.instance_id for record in page.instances)
        if page.continuation is None:
            return ids
        query = dataclasses.replace(query, continuation=page.continuation)


class ManagementContract(ContractBase):
    """What clients and operators read: instance records, histories, listings and depths."""

    # -- read_instance --------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_read_instance_of_an_unknown_id_is_none(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        assert await provider.read_instance("ghost") is None

    @pytest.mark.anyio
    async def test_read_instance_of_a_pending_start_is_pending(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1", name="Billing", version="2.0.0"))

        record = await _record(provider, "i1")

        assert (record.instance_id, record.state, record.name) == ("i1", State.PENDING, "Billing")
        assert record.execution_id == 0
        assert record.execution_status is None
        assert record.output is None

    @pytest.mark.anyio
    async def test_read_instance_after_the_first_turn_is_running(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", name="Billing")

        await provider.commit_turn(turn_commit(item, version="3.1.0"))

        record = await _record(provider, "i1")
        assert (record.state, record.name, record.version) == (State.RUNNING, "Billing", "3.1.0")
        assert (record.execution_id, record.execution_status) == (1, ExecutionStatus.RUNNING)
        assert (record.output, record.error, record.completed_at_ms) == (None, None, None)
        assert record.parent_instance_id is None

    @pytest.mark.anyio
    async def test_read_instance_of_a_completed_instance_has_its_output(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await clock.advance(3)

        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED, output={"total": 7})

        record = await _record(provider, "i1")
        assert (record.state, record.execution_status) == (
            State.COMPLETED,
            ExecutionStatus.COMPLETED,
        )
        assert record.output == payload({"total": 7})
        assert record.error is None
        assert record.completed_at_ms == clock.now_ms()

    @pytest.mark.anyio
    async def test_read_instance_of_a_failed_instance_has_its_error(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        error = msgspec.structs.replace(app_error("card declined"), details="Traceback ...")

        await next_turn(provider, "i1", status=ExecutionStatus.FAILED, error=error)

        record = await _record(provider, "i1")
        assert (record.state, record.execution_status) == (State.FAILED, ExecutionStatus.FAILED)
        assert record.error == error
        assert record.output is None
        assert record.completed_at_ms == clock.now_ms()

    @pytest.mark.anyio
    async def test_read_instance_tracks_creation_and_update_times(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        started_at = clock.now_ms()
        await provider.start_orchestration(start_message("i1"))
        await clock.advance(2)
        await provider.commit_turn(turn_commit(await lock_instance(provider, "i1")))
        first_commit_at = clock.now_ms()
        created = (await _record(provider, "i1")).created_at_ms

        await clock.advance(5)
        await next_turn(provider, "i1")

        record = await _record(provider, "i1")
        assert started_at <= created <= first_commit_at
        assert record.created_at_ms == created
        assert record.updated_at_ms == clock.now_ms()

    @pytest.mark.anyio
    async def test_read_instance_follows_continue_as_new(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")

        item = await continue_as_new_and_lock(provider, "i1")
        between = await _record(provider, "i1")
        await provider.commit_turn(turn_commit(item))

        assert (between.state, between.execution_id) == (State.RUNNING, 1)
        assert between.execution_status is ExecutionStatus.CONTINUED_AS_NEW
        record = await _record(provider, "i1")
        assert (record.state, record.execution_id) == (State.RUNNING, 2)
        assert record.execution_status is ExecutionStatus.RUNNING

    @pytest.mark.anyio
    async def test_parent_link_is_kept_once_set(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "parent")
        await create_instance(provider, "child", parent="parent")
        item = await lock_next_turn(provider, "child")

        await provider.commit_turn(with_changes(turn_commit(item), parent_instance_id=None))

        assert (await _record(provider, "child")).parent_instance_id == "parent"

    # -- histories and executions ---------------------------------------------------------------

    @pytest.mark.anyio
    async def test_read_history_serves_the_current_or_a_chosen_execution(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        first = await create_instance(provider, "i1")
        await next_turn(provider, "i1")
        second = await continue_as_new(provider, "i1")

        current = await provider.read_history("i1")
        assert current == list(second.changes.new_events)
        assert await provider.read_history("i1", 2) == current
        old = await provider.read_history("i1", 1)
        assert [event.event_id for event in old] == list(range(1, len(old) + 1))
        assert old[0] == first.changes.new_events[0]

    @pytest.mark.anyio
    async def test_read_history_of_unknown_instances_and_executions_is_empty(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await provider.start_orchestration(start_message("pending"))

        assert await provider.read_history("ghost") == []
        assert await provider.read_history("i1", 7) == []
        assert await provider.read_history("pending") == []

    @pytest.mark.anyio
    async def test_list_executions_lists_stored_ids_ascending(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 3)
        await provider.start_orchestration(start_message("pending"))

        assert await provider.list_executions("i1") == [1, 2, 3]
        assert await provider.list_executions("pending") == []
        assert await provider.list_executions("ghost") == []

    # -- list_instances -------------------------------------------------------------------------

    async def _create_spaced(self, provider: Provider, clock: VirtualClock, *ids: str) -> None:
        """Create instances in order, one second apart, so newest-first order is unambiguous."""
        for instance_id in ids:
            await create_instance(provider, instance_id)
            await clock.advance(1)

    @pytest.mark.anyio
    async def test_list_instances_returns_newest_first(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._create_spaced(provider, clock, "a", "b", "c")

        page = await provider.list_instances(InstanceQuery())

        assert [record.instance_id for record in page.instances] == ["c", "b", "a"]
        assert page.continuation is None
        assert page.instances[0] == await provider.read_instance("c")

    @pytest.mark.anyio
    async def test_list_instances_filters_by_state(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "done", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "broken", status=ExecutionStatus.FAILED)
        await create_instance(provider, "busy")
        await create_instance(provider, "looping")
        await continue_as_new_and_lock(provider, "looping")

        async def ids(*states: State) -> set[str]:
            return set(await _list_ids(provider, InstanceQuery(states=frozenset(states))))

        assert await ids(State.COMPLETED) == {"done"}
        assert await ids(State.FAILED) == {"broken"}
        assert await ids(State.RUNNING) == {"busy", "looping"}
        assert await ids(State.COMPLETED, State.FAILED) == {"done", "broken"}

    @pytest.mark.anyio
    async def test_list_instances_filters_by_name_and_parent(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "root", name="Root")
        await create_instance(provider, "c1", name="Leaf", parent="root")
        await create_instance(provider, "c2", name="Leaf", parent="root")
        await create_instance(provider, "loner", name="Leaf")

        by_name = set(await _list_ids(provider, InstanceQuery(name="Leaf")))
        by_parent = set(await _list_ids(provider, InstanceQuery(parent_instance_id="root")))
        both = await _list_ids(provider, InstanceQuery(name="Root", parent_instance_id="root"))

        assert by_name == {"c1", "c2", "loner"}
        assert by_parent == {"c1", "c2"}
        assert both == []

    @pytest.mark.anyio
    async def test_list_instances_filters_by_creation_window(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        t0 = clock.now_ms()
        for instance_id in ("early", "middle", "late"):
            await create_instance(provider, instance_id)
            await clock.advance(10)

        after = InstanceQuery(created_after_ms=t0 + 5_000)
        before = InstanceQuery(created_before_ms=t0 + 15_000)
        window = InstanceQuery(created_after_ms=t0 + 5_000, created_before_ms=t0 + 15_000)

        assert await _list_ids(provider, after) == ["late", "middle"]
        assert await _list_ids(provider, before) == ["middle", "early"]
        assert await _list_ids(provider, window) == ["middle"]

    @pytest.mark.anyio
    async def test_list_instances_pages_with_a_continuation(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._create_spaced(provider, clock, "i1", "i2", "i3", "i4", "i5")

        first = await provider.list_instances(InstanceQuery(limit=2))
        assert [r.instance_id for r in first.instances] == ["i5", "i4"]
        assert first.continuation is not None
        second = await provider.list_instances(
            InstanceQuery(limit=2, continuation=first.continuation)
        )
        assert [r.instance_id for r in second.instances] == ["i3", "i2"]
        assert second.continuation is not None
        last = await provider.list_instances(
            InstanceQuery(limit=2, continuation=second.continuation)
        )
        assert [r.instance_id for r in last.instances] == ["i1"]
        assert last.continuation is None

    @pytest.mark.anyio
    async def test_list_instances_pages_apply_the_filters(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        for n in range(1, 7):
            status = ExecutionStatus.COMPLETED if n % 2 else ExecutionStatus.RUNNING
            await create_instance(provider, f"i{n}", status=status)
            await clock.advance(1)

        completed = InstanceQuery(states=frozenset({State.COMPLETED}), limit=1)

        assert await _list_ids(provider, completed) == ["i5", "i3", "i1"]

    @pytest.mark.anyio
    async def test_list_instances_paging_is_stable_while_instances_are_created(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._create_spaced(provider, clock, "i1", "i2", "i3", "i4")
        first = await provider.list_instances(InstanceQuery(limit=2))

        await self._create_spaced(provider, clock, "i5", "i6")
        rest = await _list_ids(provider, InstanceQuery(limit=2, continuation=first.continuation))

        assert [r.instance_id for r in first.instances] == ["i4", "i3"]
        assert rest == ["i2", "i1"]

    @pytest.mark.anyio
    async def test_list_instances_merges_states_newest_first_across_pages(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        statuses = [
            ExecutionStatus.COMPLETED,
            ExecutionStatus.RUNNING,
            ExecutionStatus.FAILED,
            ExecutionStatus.RUNNING,
            ExecutionStatus.COMPLETED,
        ]
        for n, status in enumerate(statuses, start=1):
            await create_instance(provider, f"i{n}", name="Same", status=status)
            await clock.advance(1)
        await create_instance(provider, "other", name="Other")
        await provider.start_orchestration(start_message("queued", name="Same"))

        by_name = InstanceQuery(name="Same", limit=2)
        finished = InstanceQuery(states=frozenset({State.COMPLETED, State.FAILED}), limit=1)

        assert await _list_ids(provider, by_name) == ["queued", "i5", "i4", "i3", "i2", "i1"]
        assert await _list_ids(provider, finished) == ["i5", "i3", "i1"]

    @pytest.mark.anyio
    async def test_list_instances_filters_by_id_prefix(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await self._create_spaced(provider, clock, "order-1", "order-12", "orders", "invoice-1")
        await provider.start_orchestration(start_message("order-99"))

        async def ids(prefix: str, limit: int = 100) -> list[str]:
            return await _list_ids(provider, InstanceQuery(instance_id_prefix=prefix, limit=limit))

        assert await ids("order-", limit=1) == ["order-99", "order-12", "order-1"]
        assert await ids("order-1") == ["order-12", "order-1"]
        assert await ids("orders") == ["orders"]
        assert await ids("Order") == []
        assert await ids("z") == []

    # -- count_instances ------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_count_instances_counts_every_state(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "done", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "done2", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "broken", status=ExecutionStatus.FAILED)
        await create_instance(provider, "busy")
        await create_instance(provider, "looping")
        await continue_as_new_and_lock(provider, "looping")
        await provider.start_orchestration(start_message("queued"))

        counted = await provider.count_instances(InstanceCountQuery())

        assert dict(counted.counts) == {
            State.PENDING: 1,
            State.RUNNING: 2,
            State.COMPLETED: 2,
            State.FAILED: 1,
        }
        assert counted.capped == frozenset()

    @pytest.mark.anyio
    async def test_count_instances_stops_at_at_most_and_says_so(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        for n in range(4):
            await create_instance(provider, f"done-{n}", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "busy")

        counted = await provider.count_instances(InstanceCountQuery(at_most=2))

        assert counted.counts[State.COMPLETED] == 2
        assert counted.counts[State.RUNNING] == 1
        assert counted.counts[State.PENDING] == 0
        assert counted.capped == frozenset({State.COMPLETED})

    # -- list_children --------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_list_children_lists_direct_children_only(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "root")
        await create_instance(provider, "c1", parent="root")
        await create_instance(provider, "c2", parent="root")
        await create_instance(provider, "grandchild", parent="c1")

        assert sorted(await provider.list_children("root")) == ["c1", "c2"]
        assert await provider.list_children("c1") == ["grandchild"]

    @pytest.mark.anyio
    async def test_list_children_of_a_leaf_or_unknown_instance_is_empty(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "leaf")

        assert await provider.list_children("leaf") == []
        assert await provider.list_children("ghost") == []

    # -- queue depths ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_queue_depths_count_each_kind_of_message(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        assert await provider.queue_depths() == QueueDepths()
        await provider.start_orchestration(start_message("a"))
        await provider.start_orchestration(start_message("b"))
        depths = await provider.queue_depths()
        assert (depths.orchestrator, depths.timers, depths.worker, depths.locked) == (2, 0, 0, 0)

        item = await lock_instance(provider, "a")
        depths = await provider.queue_depths()
        assert (depths.orchestrator, depths.locked) == (1, 1)

        timer = TimerFiredMessage(instance_id="a", execution_id=1, seq=9, fire_at=0)
        due = clock.now_ms() + 60_000
        await provider.commit_turn(
            turn_commit(
                item,
                activity_tasks=[activity_task("a", seq) for seq in (1, 2, 3)],
                orchestrator_messages=[ScheduledMessage(message=timer, visible_at_ms=due)],
            )
        )
        depths = await provider.queue_depths()
        assert (depths.orchestrator, depths.timers, depths.worker, depths.locked) == (1, 1, 3, 0)

        assert await provider.fetch_activity(activity_request(lock_timeout=600)) is not None
        depths = await provider.queue_depths()
        assert (depths.worker, depths.locked) == (2, 1)

        await clock.advance(61)
        depths = await provider.queue_depths()
        assert (depths.orchestrator, depths.timers, depths.worker, depths.locked) == (2, 0, 2, 1)

    @pytest.mark.anyio
    async def test_queue_depths_report_the_earliest_time_hidden_work_becomes_visible(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # Optional for a store (None: not computed); one that reports it must be exact, since
        # duro.testing.WorkflowEnvironment jumps its clock to exactly this time.
        await provider.start_orchestration(start_message("a"))
        item = await lock_instance(provider, "a")
        now = clock.now_ms()
        timers = [
            ScheduledMessage(
                message=TimerFiredMessage(instance_id="a", execution_id=1, seq=s, fire_at=0),
                visible_at_ms=now + s * 60_000,
            )
            for s in (3, 2)
        ]
        await provider.commit_turn(turn_commit(item, orchestrator_messages=timers))
        depths = await provider.queue_depths()
        if depths.next_due_ms is None:
            return
        assert depths.next_due_ms == now + 120_000
        await clock.advance(121)
        assert (await provider.queue_depths()).next_due_ms == now + 180_000
        await clock.advance(60)
        assert (await provider.queue_depths()).next_due_ms is None


class CustomStatusContract(ContractBase):
    """Custom status lives on the instance; each commit that changes it bumps its version."""

    async def _status(self, provider: Provider, instance_id: str) -> tuple[bytes | None, int]:
        record = await _record(provider, instance_id)
        return record.custom_status, record.custom_status_version

    @pytest.mark.anyio
    async def test_custom_status_starts_unset_at_version_zero(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "running")
        await provider.start_orchestration(start_message("pending"))

        assert await self._status(provider, "pending") == (None, 0)
        assert await self._status(provider, "running") == (None, 0)

    @pytest.mark.anyio
    async def test_setting_custom_status_stores_it_at_version_one(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", custom_status=payload({"progress": 0.5}))

        assert await self._status(provider, "i1") == (payload({"progress": 0.5}), 1)

    @pytest.mark.anyio
    async def test_clearing_custom_status_bumps_the_version(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", custom_status=payload("working"))

        await next_turn(provider, "i1", custom_status=None)

        assert await self._status(provider, "i1") == (None, 2)

    @pytest.mark.anyio
    async def test_turn_without_a_change_keeps_custom_status(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", custom_status=payload("working"))

        await next_turn(provider, "i1")
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)

        assert await self._status(provider, "i1") == (payload("working"), 1)

    @pytest.mark.anyio
    async def test_every_change_bumps_the_version_by_one(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        seen = []
        for value in (payload("a"), payload("a"), None, payload("b")):
            await next_turn(provider, "i1", custom_status=value)
            seen.append(await self._status(provider, "i1"))

        assert seen == [(payload("a"), 1), (payload("a"), 2), (None, 3), (payload("b"), 4)]

    @pytest.mark.anyio
    async def test_custom_status_survives_continue_as_new(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", custom_status=payload("phase 1"))

        await continue_as_new(provider, "i1")
        assert await self._status(provider, "i1") == (payload("phase 1"), 1)
        await next_turn(provider, "i1", custom_status=payload("phase 2"))

        assert await self._status(provider, "i1") == (payload("phase 2"), 2)

    @pytest.mark.anyio
    async def test_rejected_commit_leaves_custom_status_unchanged(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", custom_status=payload("kept"))
        item = await lock_next_turn(provider, "i1")
        commit = turn_commit(item, custom_status=payload("lost"))

        with pytest.raises(LockLostError):
            await provider.commit_turn(dataclasses.replace(commit, lock_token="not-the-token"))

        assert await self._status(provider, "i1") == (payload("kept"), 1)
        await provider.commit_turn(commit)
        assert await self._status(provider, "i1") == (payload("lost"), 2)
