"""Contract: starting instances with ``start_instance`` (idempotent starts, restarts, starts
with messages)."""

from __future__ import annotations

import pytest

from ..._errors import InstanceAlreadyExistsError
from ..._messages import RaiseEventMessage, StartOrchestrationMessage
from ..._status import State
from ...providers import Provider
from ...providers._types import (
    ExecutionStatus,
    InstanceCountQuery,
    InstanceQuery,
    StartOutcome,
    StartRequest,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    create_instance,
    kv_set,
    lock_instance,
    next_turn,
    payload,
    raw,
    start_message,
    turn_commit,
)


def _event(instance_id: str, name: str = "go", data: object = None) -> RaiseEventMessage:
    return RaiseEventMessage(instance_id=instance_id, name=name, data=raw(data))


async def _existing_instance(provider: Provider, instance_id: str, committed: bool) -> None:
    """An instance that exists: RUNNING after a commit, or only a queued start (PENDING)."""
    if committed:
        await create_instance(provider, instance_id)
    else:
        await provider.start_orchestration(start_message(instance_id))


def _kinds(messages: list[object]) -> list[str]:
    return [
        f"event {m.name}" if isinstance(m, RaiseEventMessage) else type(m).__name__
        for m in messages
    ]


class StartContract(ContractBase):
    """``start_instance``: one atomic check-and-enqueue, whatever ``if_exists`` says."""

    @pytest.mark.anyio
    async def test_a_new_instance_is_started_with_its_messages_after_the_start(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        outcome = await provider.start_instance(
            StartRequest(start=start_message("i1"), messages=[_event("i1", "a"), _event("i1", "b")])
        )

        assert outcome is StartOutcome.STARTED
        item = await lock_instance(provider, "i1")
        assert _kinds(list(item.messages)) == ["StartOrchestrationMessage", "event a", "event b"]

    @pytest.mark.anyio
    @pytest.mark.parametrize("committed", [False, True], ids=["pending", "running"])
    async def test_fail_on_an_existing_instance_raises_and_enqueues_nothing(
        self, provider: Provider, clock: VirtualClock, committed: bool
    ) -> None:
        await _existing_instance(provider, "i1", committed)

        with pytest.raises(InstanceAlreadyExistsError) as caught:
            await provider.start_instance(
                StartRequest(start=start_message("i1"), messages=[_event("i1")])
            )

        assert caught.value.instance_id == "i1"
        depths = await provider.queue_depths()
        assert depths.orchestrator == (0 if committed else 1)

    @pytest.mark.anyio
    async def test_use_existing_on_a_pending_instance_adds_only_the_messages(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1", input="first"))

        outcome = await provider.start_instance(
            StartRequest(
                start=start_message("i1", input="second"),
                if_exists="use_existing",
                messages=[_event("i1")],
            )
        )

        assert outcome is StartOutcome.EXISTING
        item = await lock_instance(provider, "i1")
        assert _kinds(list(item.messages)) == ["StartOrchestrationMessage", "event go"]
        start = item.messages[0]
        assert isinstance(start, StartOrchestrationMessage) and bytes(start.input) == b'"first"'

    @pytest.mark.anyio
    async def test_use_existing_on_a_running_instance_delivers_the_messages(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")

        outcome = await provider.start_instance(
            StartRequest(
                start=start_message("i1"), if_exists="use_existing", messages=[_event("i1")]
            )
        )

        assert outcome is StartOutcome.EXISTING
        item = await lock_instance(provider, "i1")
        assert _kinds(list(item.messages)) == ["event go"]
        assert item.execution_id == 1

    @pytest.mark.anyio
    async def test_use_existing_without_an_instance_starts_it(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        outcome = await provider.start_instance(
            StartRequest(start=start_message("i1"), if_exists="use_existing")
        )

        assert outcome is StartOutcome.STARTED
        record = await provider.read_instance("i1")
        assert record is not None and record.state is State.PENDING

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED])
    async def test_restart_if_finished_queues_the_next_execution_and_reads_as_pending(
        self, provider: Provider, clock: VirtualClock, status: ExecutionStatus
    ) -> None:
        await create_instance(provider, "i1", kv_changes=[kv_set("k", 1, at_ms=clock.now_ms())])
        await next_turn(provider, "i1", status=status, output="old", custom_status=b'"done"')
        await clock.advance(1)

        outcome = await provider.start_instance(
            StartRequest(
                start=start_message("i1", input="again"),
                if_exists="restart_if_finished",
                messages=[_event("i1")],
            )
        )

        assert outcome is StartOutcome.RESTARTED
        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.state, record.execution_id, record.execution_status) == (
            State.PENDING,
            1,
            None,
        )
        assert (record.output, record.error, record.custom_status) == (None, None, None)
        # Reads show a new instance, not the finished execution's KV (its first turn drops it).
        assert await provider.get_kv_value("i1", "k") is None
        assert await provider.get_kv_items("i1") == {}
        assert await provider.get_kv_snapshot("i1") == {}
        pending = await provider.list_instances(InstanceQuery(states=frozenset({State.PENDING})))
        assert [r.instance_id for r in pending.instances] == ["i1"]
        finished = await provider.list_instances(
            InstanceQuery(states=frozenset({State.COMPLETED, State.FAILED}))
        )
        assert finished.instances == []
        counts = await provider.count_instances(InstanceCountQuery(at_most=10))
        assert (counts.counts[State.PENDING], counts.counts[status.instance_state()]) == (1, 0)

        item = await lock_instance(provider, "i1")
        assert item.execution_id == 1
        assert item.instance is not None and item.instance.execution_status is None
        assert _kinds(list(item.messages)) == ["StartOrchestrationMessage", "event go"]
        commit = turn_commit(item, kv_clear_all=True, kv_changes=[kv_set("n", 2, at_ms=1)])
        assert commit.changes.execution_id == 2
        await provider.commit_turn(commit)

        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.state, record.execution_id) == (State.RUNNING, 2)
        assert await provider.list_executions("i1") == [1, 2]
        assert len(await provider.read_history("i1", 1)) == 3
        assert await provider.get_kv_value("i1", "k") is None
        entry = await provider.get_kv_value("i1", "n")
        assert entry is not None and entry.value == payload(2)

    @pytest.mark.anyio
    @pytest.mark.parametrize("committed", [False, True], ids=["pending", "running"])
    async def test_restart_if_finished_refuses_an_instance_that_has_not_finished(
        self, provider: Provider, clock: VirtualClock, committed: bool
    ) -> None:
        await _existing_instance(provider, "i1", committed)

        with pytest.raises(InstanceAlreadyExistsError):
            await provider.start_instance(
                StartRequest(start=start_message("i1"), if_exists="restart_if_finished")
            )

    @pytest.mark.anyio
    async def test_a_queued_restart_is_not_queued_twice(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", status=ExecutionStatus.COMPLETED)
        restart = StartRequest(start=start_message("i1"), if_exists="restart_if_finished")
        assert await provider.start_instance(restart) is StartOutcome.RESTARTED

        with pytest.raises(InstanceAlreadyExistsError):
            await provider.start_instance(restart)
        assert (await provider.queue_depths()).orchestrator == 1

    @pytest.mark.anyio
    async def test_restart_if_finished_without_an_instance_starts_it(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        outcome = await provider.start_instance(
            StartRequest(start=start_message("i1"), if_exists="restart_if_finished")
        )

        assert outcome is StartOutcome.STARTED
        item = await lock_instance(provider, "i1")
        assert item.execution_id == 0
