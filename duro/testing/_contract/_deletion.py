"""Contract: deleting instance trees (force, cascade, zombie turns) and pruning executions."""

from __future__ import annotations

import pytest

from ..._errors import InstanceNotFoundError, InstanceStillRunningError, LockLostError
from ..._messages import StartOrchestrationMessage, TimerFiredMessage
from ..._status import State
from ...providers import Provider
from ...providers._types import (
    AbandonRequest,
    ActivityCommit,
    DeleteRequest,
    ExecutionStatus,
    PruneRequest,
    QueueDepths,
    RenewRequest,
    ScheduledMessage,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    activity_request,
    activity_result,
    activity_task,
    continue_as_new,
    create_executions,
    create_instance,
    external_event,
    kv_set,
    lock_instance,
    lock_next_turn,
    next_turn,
    payload,
    schedule_activities,
    start_and_lock,
    start_message,
    turn_commit,
    turn_request,
)


async def _gone(provider: Provider, instance_id: str) -> bool:
    """Whether every trace of ``instance_id`` a client can read is gone."""
    return (
        await provider.read_instance(instance_id) is None
        and await provider.read_history(instance_id) == []
        and await provider.list_executions(instance_id) == []
    )


async def _event_count(provider: Provider, instance_id: str, executions: list[int]) -> int:
    return sum([len(await provider.read_history(instance_id, e)) for e in executions])


class DeletionContract(ContractBase):
    """``delete_instance`` removes a whole tree atomically; a turn in flight cannot undo it."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED])
    async def test_finished_instance_is_deleted_without_force(
        self, provider: Provider, clock: VirtualClock, status: ExecutionStatus
    ) -> None:
        await create_instance(provider, "i1", status=status)

        result = await provider.delete_instance(DeleteRequest(instance_id="i1"))

        assert (result.instances_deleted, result.executions_deleted) == (1, 1)
        assert result.events_deleted == 2
        assert await _gone(provider, "i1")

    @pytest.mark.anyio
    async def test_delete_reports_every_execution_event_and_message_removed(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 3)
        events = await _event_count(provider, "i1", [1, 2, 3])
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        await provider.enqueue_orchestrator_message(external_event("i1"))
        await provider.enqueue_orchestrator_message(external_event("i1", name="late"))

        result = await provider.delete_instance(DeleteRequest(instance_id="i1"))

        assert (result.instances_deleted, result.executions_deleted) == (1, 3)
        assert result.events_deleted == events + 2
        assert result.messages_deleted >= 2

    @pytest.mark.anyio
    async def test_delete_of_a_running_instance_without_force_raises_and_keeps_it(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])

        with pytest.raises(InstanceStillRunningError) as caught:
            await provider.delete_instance(DeleteRequest(instance_id="i1"))

        assert caught.value.instance_id == "i1"
        assert (await provider.read_instance("i1")) is not None
        assert await provider.list_executions("i1") == [1]
        assert await provider.fetch_activity(activity_request()) is not None

    @pytest.mark.anyio
    async def test_force_delete_removes_a_running_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await schedule_activities(provider, "i1", [activity_task("i1", 1)])
        await provider.enqueue_orchestrator_message(external_event("i1"))

        result = await provider.delete_instance(DeleteRequest(instance_id="i1", force=True))

        assert result.instances_deleted == 1
        assert await _gone(provider, "i1")
        assert await provider.queue_depths() == QueueDepths()

    @pytest.mark.anyio
    async def test_delete_of_an_unknown_instance_raises_not_found(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", status=ExecutionStatus.COMPLETED)
        await provider.delete_instance(DeleteRequest(instance_id="i1"))

        for instance_id in ("ghost", "i1"):
            with pytest.raises(InstanceNotFoundError) as caught:
                await provider.delete_instance(DeleteRequest(instance_id=instance_id, force=True))
            assert caught.value.instance_id == instance_id

    @pytest.mark.anyio
    async def test_delete_cascades_to_every_descendant(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        done = ExecutionStatus.COMPLETED
        await create_instance(provider, "root", status=done)
        await create_instance(provider, "c1", parent="root", status=done)
        await create_instance(provider, "c2", parent="root", status=ExecutionStatus.FAILED)
        await create_instance(provider, "grandchild", parent="c1", status=done)
        await create_instance(provider, "bystander", status=done)

        result = await provider.delete_instance(DeleteRequest(instance_id="root"))

        assert (result.instances_deleted, result.executions_deleted) == (4, 4)
        assert result.events_deleted == 8
        for instance_id in ("root", "c1", "c2", "grandchild"):
            assert await _gone(provider, instance_id), instance_id
        assert (await provider.read_instance("bystander")) is not None

    @pytest.mark.anyio
    async def test_running_descendant_blocks_delete_without_force(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "root", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "child", parent="root", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "grandchild", parent="child")

        with pytest.raises(InstanceStillRunningError):
            await provider.delete_instance(DeleteRequest(instance_id="root"))

        for instance_id in ("root", "child", "grandchild"):
            assert (await provider.read_instance(instance_id)) is not None, instance_id
        result = await provider.delete_instance(DeleteRequest(instance_id="root", force=True))
        assert result.instances_deleted == 3

    @pytest.mark.anyio
    async def test_delete_drops_queued_messages_and_frees_the_id(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(
            provider,
            "i1",
            custom_status=payload("old"),
            kv_changes=[kv_set("k", 1, at_ms=clock.now_ms())],
        )
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        # Messages that arrive after the end: a late timer and an event.
        timer = TimerFiredMessage(instance_id="i1", execution_id=1, seq=5, fire_at=0)
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=timer, visible_at_ms=clock.now_ms() + 60_000)
        )
        await provider.enqueue_orchestrator_message(external_event("i1"))

        result = await provider.delete_instance(DeleteRequest(instance_id="i1"))

        assert result.messages_deleted >= 2
        assert await provider.queue_depths() == QueueDepths()
        item = await start_and_lock(provider, "i1", name="Reborn")
        assert [type(message) for message in item.messages] == [StartOrchestrationMessage]
        assert (item.instance, item.execution_id, item.history) == (None, 0, [])
        await provider.commit_turn(turn_commit(item))
        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.name, record.custom_status, record.custom_status_version) == (
            "Reborn",
            None,
            0,
        )
        assert await provider.list_executions("i1") == [1]
        await clock.advance(61)
        assert await provider.fetch_turn(turn_request()) is None

    @pytest.mark.anyio
    async def test_commit_after_deletion_raises_lock_lost_and_resurrects_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1")
        zombie = turn_commit(
            item,
            status=ExecutionStatus.COMPLETED,
            custom_status=payload("zombie"),
            kv_changes=[kv_set("k", 1, at_ms=clock.now_ms())],
            activity_tasks=[activity_task("i1", 1)],
            orchestrator_messages=[ScheduledMessage(message=start_message("spawned"))],
        )

        await provider.delete_instance(DeleteRequest(instance_id="i1", force=True))
        with pytest.raises(LockLostError):
            await provider.commit_turn(zombie)

        assert await _gone(provider, "i1")
        assert await provider.get_kv_items("i1") == {}
        assert await provider.read_instance("spawned") is None
        assert await provider.queue_depths() == QueueDepths()

    @pytest.mark.anyio
    async def test_lock_operations_after_deletion_raise_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1")

        await provider.delete_instance(DeleteRequest(instance_id="i1", force=True))

        with pytest.raises(LockLostError):
            await provider.renew_turn_lock(RenewRequest(lock_token=item.lock_token, extend_for=5))
        with pytest.raises(LockLostError):
            await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))
        assert await _gone(provider, "i1")

    @pytest.mark.anyio
    async def test_work_items_of_a_deleted_instance_are_withdrawn(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        tasks = [activity_task("i1", 1), activity_task("i1", 2)]
        await schedule_activities(provider, "i1", tasks)
        in_flight = await provider.fetch_activity(activity_request())
        assert in_flight is not None

        await provider.delete_instance(DeleteRequest(instance_id="i1", force=True))

        assert await provider.fetch_activity(activity_request()) is None
        with pytest.raises(LockLostError):
            await provider.renew_activity_lock(
                RenewRequest(lock_token=in_flight.lock_token, extend_for=5)
            )
        with pytest.raises(LockLostError):
            await provider.complete_activity(
                ActivityCommit(lock_token=in_flight.lock_token, result=activity_result(tasks[0]))
            )
        assert await provider.queue_depths() == QueueDepths()

    @pytest.mark.anyio
    async def test_stale_completion_never_reaches_a_recreated_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        task = activity_task("i1", 1)
        await schedule_activities(provider, "i1", [task])
        stale = await provider.fetch_activity(activity_request())
        assert stale is not None
        await provider.delete_instance(DeleteRequest(instance_id="i1", force=True))
        await create_instance(provider, "i1")

        with pytest.raises(LockLostError):
            await provider.complete_activity(
                ActivityCommit(lock_token=stale.lock_token, result=activity_result(task))
            )

        assert await provider.fetch_turn(turn_request()) is None
        assert await provider.fetch_activity(activity_request()) is None

    @pytest.mark.anyio
    async def test_delete_leaves_other_instances_untouched(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "doomed", status=ExecutionStatus.COMPLETED)
        await schedule_activities(provider, "kept", [activity_task("kept", 1)])
        await provider.enqueue_orchestrator_message(external_event("kept"))

        await provider.delete_instance(DeleteRequest(instance_id="doomed"))

        record = await provider.read_instance("kept")
        assert record is not None
        assert record.state is State.RUNNING
        assert await provider.list_executions("kept") == [1]
        assert (await lock_instance(provider, "kept")).messages
        assert await provider.fetch_activity(activity_request()) is not None


class PruneContract(ContractBase):
    """``prune_executions`` drops old finished executions, never the current one."""

    @pytest.mark.anyio
    async def test_prune_by_default_keeps_only_the_current_execution(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 4)
        events = await _event_count(provider, "i1", [1, 2, 3])
        current = await provider.read_history("i1")

        result = await provider.prune_executions(PruneRequest(instance_id="i1"))

        assert (result.executions_deleted, result.events_deleted) == (3, events)
        assert await provider.list_executions("i1") == [4]
        assert await provider.read_history("i1") == current
        assert await provider.read_history("i1", 1) == []

    @pytest.mark.anyio
    async def test_prune_keep_last_keeps_the_newest_executions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 4)

        result = await provider.prune_executions(PruneRequest(instance_id="i1", keep_last=2))

        assert result.executions_deleted == 2
        assert await provider.list_executions("i1") == [3, 4]

    @pytest.mark.anyio
    async def test_prune_keep_last_zero_still_keeps_the_current_execution(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 3)
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)

        result = await provider.prune_executions(PruneRequest(instance_id="i1", keep_last=0))

        assert result.executions_deleted == 2
        assert await provider.list_executions("i1") == [3]
        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.state, record.execution_id) == (State.COMPLETED, 3)

    @pytest.mark.anyio
    async def test_prune_completed_before_removes_only_older_executions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        for _ in range(3):
            await clock.advance(10)
            await continue_as_new(provider, "i1")
        # executions 1, 2 and 3 ended 10, 20 and 30 seconds in (now); 4 runs
        cutoff = clock.now_ms() - 5_000

        result = await provider.prune_executions(
            PruneRequest(instance_id="i1", keep_last=1, completed_before_ms=cutoff)
        )

        assert result.executions_deleted == 2
        assert await provider.list_executions("i1") == [3, 4]

    @pytest.mark.anyio
    async def test_prune_of_a_running_instance_keeps_it_running(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 3)
        await provider.prune_executions(PruneRequest(instance_id="i1"))

        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.state, record.execution_id) == (State.RUNNING, 3)
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        assert await provider.list_executions("i1") == [3]

    @pytest.mark.anyio
    async def test_prune_with_nothing_to_remove_reports_zero(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "single", status=ExecutionStatus.COMPLETED)
        await create_executions(provider, "multi", 3)
        await provider.prune_executions(PruneRequest(instance_id="multi"))

        for instance_id in ("single", "multi"):
            result = await provider.prune_executions(PruneRequest(instance_id=instance_id))
            assert (result.executions_deleted, result.events_deleted) == (0, 0)

    @pytest.mark.anyio
    async def test_prune_of_an_unknown_instance_raises_not_found(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        with pytest.raises(InstanceNotFoundError):
            await provider.prune_executions(PruneRequest(instance_id="ghost"))
