"""Contract: turn commits (atomicity, error classification), instance creation, executions."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from ..._errors import (
    DuplicateEventError,
    InstanceAlreadyExistsError,
    LockLostError,
    ProviderError,
)
from ..._history import ContinuedAsNew, OrchestrationStarted, ParentRef
from ..._status import State
from ...providers import Provider
from ...providers._types import (
    AbandonRequest,
    ExecutionStatus,
    RenewRequest,
    ScheduledMessage,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    ORCH_NAME,
    activity_request,
    activity_task,
    app_error,
    continue_as_new,
    continue_as_new_and_lock,
    create_executions,
    create_instance,
    external_event,
    fetch_all_activities,
    kv_set,
    lock_next_turn,
    next_turn,
    payload,
    seqs,
    start_and_lock,
    start_message,
    turn_commit,
)
from ._helpers import (
    BOGUS_TOKEN,
    kinds,
    must_turn,
    raised,
    timer,
    try_turn,
    with_changes,
    with_event_ids,
)


class AtomicityContract(ContractBase):
    """``commit_turn`` applies a whole turn or nothing; a rejected commit keeps the lock."""

    @pytest.mark.anyio
    async def test_commit_with_duplicate_event_id_changes_nothing_and_keeps_lock(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        good = turn_commit(
            item,
            events=raised(2),
            custom_status=payload("busy"),
            kv_changes=[kv_set("k", 1, at_ms=clock.now_ms())],
            activity_tasks=[activity_task("i1", 5)],
            orchestrator_messages=[ScheduledMessage(message=start_message("child"))],
        )
        # The clash comes last, so a store that applies events one by one is caught too.
        clash = with_event_ids(raised(1), 1)
        bad = with_changes(good, new_events=[*good.changes.new_events, *clash])

        with pytest.raises(DuplicateEventError):
            await provider.commit_turn(bad)

        assert len(await provider.read_history("i1")) == 1
        record = await provider.read_instance("i1")
        assert record is not None
        assert record.custom_status is None
        assert record.custom_status_version == 0
        assert await provider.get_kv_value("i1", "k") is None
        assert await provider.fetch_activity(activity_request()) is None
        assert await provider.read_instance("child") is None
        assert await try_turn(provider, self.lock_timeout) is None
        await provider.commit_turn(good)  # the lock survived: the corrected turn goes through
        assert len(await provider.read_history("i1")) == 3

    @pytest.mark.anyio
    async def test_first_commit_repeating_an_event_id_creates_nothing(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        good = turn_commit(item, events=raised(1))
        bad = with_changes(good, new_events=with_event_ids(good.changes.new_events, 1, 1))

        with pytest.raises(DuplicateEventError):
            await provider.commit_turn(bad)

        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.PENDING
        assert await provider.list_executions("i1") == []
        await provider.commit_turn(good)
        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.RUNNING

    @pytest.mark.anyio
    async def test_commit_applies_events_activities_and_messages_together(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        commit = turn_commit(
            item,
            events=raised(4),
            activity_tasks=[activity_task("i1", seq) for seq in (1, 2, 3)],
            orchestrator_messages=[
                timer("i1", 4, clock.now_ms() - 1),
                external_event("i1", "go"),
            ],
        )

        await provider.commit_turn(commit)

        assert [e.event_id for e in await provider.read_history("i1")] == [1, 2, 3, 4, 5]
        assert seqs(await fetch_all_activities(provider)) == [1, 2, 3]
        follow_up = await must_turn(provider, self.lock_timeout, "i1")
        assert kinds(follow_up.messages) == ["TimerFiredMessage", "RaiseEventMessage"]

    @pytest.mark.anyio
    async def test_a_long_history_and_the_turn_that_fails_it_commit_whole(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # What the engine does at RuntimeOptions.max_history_events: the turn that crosses it
        # ends the execution and commits whole. A store must take any number of events in
        # one turn (here more than a Cosmos transactional batch holds) after a long history,
        # never part of them.
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await provider.commit_turn(turn_commit(item, events=raised(250)))
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        limit = app_error("over the history limit")
        await provider.commit_turn(
            turn_commit(item, events=raised(250, "f"), status=ExecutionStatus.FAILED, error=limit)
        )

        history = await provider.read_history("i1")
        assert [e.event_id for e in history] == list(range(1, 503))
        record = await provider.read_instance("i1")
        assert record is not None and record.state is State.FAILED and record.error == limit

    @pytest.mark.anyio
    async def test_commit_with_unknown_token_keeps_the_real_lock_until_it_expires(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        with pytest.raises(LockLostError):
            await provider.commit_turn(
                dataclasses.replace(turn_commit(item), lock_token=BOGUS_TOKEN)
            )

        assert await try_turn(provider, self.lock_timeout) is None
        await clock.advance(self.lock_timeout + 1)
        again = await must_turn(provider, self.lock_timeout, "i1")
        assert again.lock_token != item.lock_token

    @pytest.mark.anyio
    async def test_concurrent_commits_with_one_token_exactly_one_wins(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        commit = turn_commit(item, events=raised(1), activity_tasks=[activity_task("i1", 1)])
        outcomes: list[str] = []

        async def attempt() -> None:
            try:
                await provider.commit_turn(commit)
            except LockLostError:
                outcomes.append("lost")
            else:
                outcomes.append("committed")

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(attempt)

        assert sorted(outcomes) == ["committed"] + ["lost"] * 4
        assert len(await provider.read_history("i1")) == 2
        assert len(await fetch_all_activities(provider)) == 1

    @pytest.mark.anyio
    async def test_batch_of_a_rejected_commit_is_redelivered_after_lock_expiry(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        good = turn_commit(item, events=raised(1))
        with pytest.raises(DuplicateEventError):
            await provider.commit_turn(
                with_changes(good, new_events=with_event_ids(good.changes.new_events, 1, 1))
            )

        await clock.advance(self.lock_timeout + 1)

        again = await must_turn(provider, self.lock_timeout, "i1")
        assert kinds(again.messages) == ["StartOrchestrationMessage"]
        assert again.execution_id == 0
        assert again.delivery_count == 2

    @pytest.mark.anyio
    async def test_commit_without_events_consumes_the_batch_and_releases_the_lock(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.commit_turn(turn_commit(item))

        assert len(await provider.read_history("i1")) == 1
        assert await try_turn(provider, self.lock_timeout) is None
        await provider.enqueue_orchestrator_message(external_event("i1"))
        assert kinds((await must_turn(provider, self.lock_timeout, "i1")).messages) == [
            "RaiseEventMessage"
        ]


class ErrorClassificationContract(ContractBase):
    """Failures are typed ``ProviderError``s: stale tokens and duplicates are permanent."""

    @pytest.mark.anyio
    async def test_commit_with_unknown_token_raises_permanent_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        with pytest.raises(LockLostError) as info:
            await provider.commit_turn(
                dataclasses.replace(turn_commit(item), lock_token=BOGUS_TOKEN)
            )

        assert isinstance(info.value, ProviderError)
        assert info.value.retryable is False

    @pytest.mark.anyio
    async def test_duplicate_event_is_a_permanent_provider_error(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        original = await provider.read_history("i1")
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        commit = turn_commit(item, events=raised(1))

        with pytest.raises(DuplicateEventError) as info:
            await provider.commit_turn(
                with_changes(commit, new_events=with_event_ids(commit.changes.new_events, 1))
            )

        assert isinstance(info.value, ProviderError)
        assert info.value.retryable is False
        assert await provider.read_history("i1") == original

    @pytest.mark.anyio
    async def test_commit_after_a_takeover_raises_permanent_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout + 1)
        assert await try_turn(provider, self.lock_timeout) is not None

        with pytest.raises(LockLostError) as info:
            await provider.commit_turn(turn_commit(item))

        assert info.value.retryable is False
        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.PENDING

    @pytest.mark.anyio
    async def test_abandon_and_renew_with_unknown_token_raise_permanent_lock_lost(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        with pytest.raises(LockLostError) as abandon:
            await provider.abandon_turn(AbandonRequest(lock_token=BOGUS_TOKEN))
        with pytest.raises(LockLostError) as renew:
            await provider.renew_turn_lock(RenewRequest(lock_token=BOGUS_TOKEN, extend_for=5))

        assert abandon.value.retryable is False
        assert renew.value.retryable is False

    @pytest.mark.anyio
    async def test_token_of_one_instance_cannot_commit_another(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("a"))
        await provider.start_orchestration(start_message("b"))
        first = await must_turn(provider, self.lock_timeout)
        second = await must_turn(provider, self.lock_timeout)

        with pytest.raises(LockLostError):
            await provider.commit_turn(
                with_changes(turn_commit(first), instance_id=second.instance_id)
            )

        await provider.commit_turn(turn_commit(first))
        await provider.commit_turn(turn_commit(second))
        assert await provider.list_executions("a") == [1]
        assert await provider.list_executions("b") == [1]

    @pytest.mark.anyio
    async def test_reads_of_unknown_instance_return_empty_results(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        assert await provider.read_instance("nope") is None
        assert await provider.read_history("nope") == []
        assert await provider.read_history("nope", 1) == []
        assert await provider.list_executions("nope") == []
        assert await provider.get_kv_value("nope", "k") is None
        assert await provider.get_kv_items("nope") == {}

    @pytest.mark.anyio
    async def test_fetch_on_empty_store_returns_none(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        assert await try_turn(provider, self.lock_timeout) is None
        assert await provider.fetch_activity(activity_request(self.lock_timeout)) is None


class InstanceCreationContract(ContractBase):
    """Instances exist only through a committed turn; starts are refused for existing ids."""

    @pytest.mark.anyio
    async def test_start_records_a_pending_instance_without_creating_it(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1", name="Pay"))

        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.PENDING
        assert record.name == "Pay"
        assert await provider.list_executions("i1") == []
        assert await provider.read_history("i1") == []

    @pytest.mark.anyio
    async def test_first_turn_of_new_instance_has_execution_zero_and_empty_history(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1", name="Pay"))

        item = await must_turn(provider, self.lock_timeout, "i1")

        assert item.instance is None or item.instance.state is State.PENDING
        assert item.execution_id == 0
        assert item.history == []
        assert item.kv_snapshot == {}
        assert kinds(item.messages) == ["StartOrchestrationMessage"]
        assert item.messages[0] == start_message("i1", name="Pay")
        assert item.delivery_count == 1

    @pytest.mark.anyio
    async def test_first_commit_creates_running_instance_with_committed_version(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.commit_turn(turn_commit(item, version="3.0.0"))

        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.RUNNING
        assert record.name == ORCH_NAME
        assert record.version == "3.0.0"
        assert record.execution_id == 1
        assert record.execution_status is ExecutionStatus.RUNNING
        assert await provider.list_executions("i1") == [1]
        history = await provider.read_history("i1")
        assert len(history) == 1
        assert isinstance(history[0], OrchestrationStarted)

    @pytest.mark.anyio
    async def test_committed_version_overrides_the_start_message_version(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1", version="1.0.0"))
        item = await must_turn(provider, self.lock_timeout, "i1")
        await provider.commit_turn(turn_commit(item, version="2.0.0"))

        later = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)

        assert later.instance is not None
        assert later.instance.version == "2.0.0"
        assert later.execution_id == 1
        assert len(later.history) == 1

    @pytest.mark.anyio
    async def test_second_start_of_a_pending_instance_raises_already_exists(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.start_orchestration(start_message("i1"))

        with pytest.raises(InstanceAlreadyExistsError) as info:
            await provider.start_orchestration(start_message("i1", name="Other"))

        assert info.value.instance_id == "i1"
        item = await must_turn(provider, self.lock_timeout, "i1")
        assert item.messages == [start_message("i1")]

    @pytest.mark.anyio
    async def test_start_of_an_existing_instance_raises_already_exists_in_every_state(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "running")
        await create_instance(provider, "completed", status=ExecutionStatus.COMPLETED)
        await create_instance(provider, "failed", status=ExecutionStatus.FAILED)
        await create_instance(provider, "continued")
        await continue_as_new(provider, "continued")

        for instance_id in ("running", "completed", "failed", "continued"):
            with pytest.raises(InstanceAlreadyExistsError):
                await provider.start_orchestration(start_message(instance_id))

        assert await try_turn(provider, self.lock_timeout) is None

    @pytest.mark.anyio
    async def test_enqueued_event_does_not_create_the_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await provider.enqueue_orchestrator_message(external_event("ghost"))

        assert await provider.read_instance("ghost") is None
        assert await provider.list_executions("ghost") == []
        await provider.start_orchestration(start_message("ghost"))  # not "already exists"

    @pytest.mark.anyio
    async def test_abandoned_first_turn_leaves_the_instance_pending(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)

        await provider.abandon_turn(AbandonRequest(lock_token=item.lock_token))

        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.PENDING
        assert await provider.list_executions("i1") == []

    @pytest.mark.anyio
    async def test_child_started_by_a_commit_is_pending_until_its_own_first_commit(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        parent = await start_and_lock(provider, "parent", lock_timeout=self.lock_timeout)
        child_start = start_message(
            "parent::child",
            name="Child",
            parent=ParentRef(instance_id="parent", execution_id=1, seq=1),
        )
        await provider.commit_turn(
            turn_commit(parent, orchestrator_messages=[ScheduledMessage(message=child_start)])
        )

        pending = await provider.read_instance("parent::child")
        assert pending is not None
        assert pending.state is State.PENDING
        assert pending.parent_instance_id == "parent"
        child = await must_turn(provider, self.lock_timeout, "parent::child")
        assert child.messages == [child_start]
        await provider.commit_turn(turn_commit(child, version="1.5.0"))
        created = await provider.read_instance("parent::child")
        assert created is not None
        assert created.state is State.RUNNING
        assert (created.name, created.version) == ("Child", "1.5.0")
        assert created.parent_instance_id == "parent"

    @pytest.mark.anyio
    async def test_start_is_refused_while_a_committed_child_start_is_queued(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        parent = await start_and_lock(provider, "parent", lock_timeout=self.lock_timeout)
        await provider.commit_turn(
            turn_commit(
                parent, orchestrator_messages=[ScheduledMessage(message=start_message("kid"))]
            )
        )

        with pytest.raises(InstanceAlreadyExistsError):
            await provider.start_orchestration(start_message("kid"))

    @pytest.mark.anyio
    async def test_parent_link_cannot_change_once_set(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "child", parent="p1")
        item = await lock_next_turn(provider, "child", lock_timeout=self.lock_timeout)

        await provider.commit_turn(with_changes(turn_commit(item), parent_instance_id="p2"))

        record = await provider.read_instance("child")
        assert record is not None
        assert record.parent_instance_id == "p1"


class MultiExecutionContract(ContractBase):
    """Continue-as-new: explicit execution ids, separate histories, the latest one current."""

    @pytest.mark.anyio
    async def test_a_failed_execution_goes_back_to_running_when_a_turn_says_so(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # A rewind (decision 0009): the same execution, FAILED, takes a message, and the turn
        # that handles it sets it RUNNING again and appends to its history.
        await create_instance(provider, "i1", status=ExecutionStatus.FAILED)
        failed_record = await provider.read_instance("i1")
        assert failed_record is not None and failed_record.completed_at_ms is not None
        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)
        assert item.execution_id == 1 and len(item.history) == 2
        await provider.commit_turn(turn_commit(item, events=raised(1)))

        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.state, record.execution_id, record.error) == (State.RUNNING, 1, None)
        assert record.execution_status is ExecutionStatus.RUNNING
        assert record.completed_at_ms is None
        assert [e.event_id for e in await provider.read_history("i1")] == [1, 2, 3]
        [execution] = await provider.read_executions("i1")
        assert execution.status is ExecutionStatus.RUNNING and execution.completed_at_ms is None

    @pytest.mark.anyio
    async def test_executions_keep_separate_histories(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        item = await continue_as_new_and_lock(provider, "i1")
        await provider.commit_turn(turn_commit(item, events=raised(1)))

        first = await provider.read_history("i1", 1)
        current = await provider.read_history("i1")
        assert [type(e) for e in first] == [
            OrchestrationStarted,
            type(raised(1)[0]),
            ContinuedAsNew,
        ]
        assert len(current) == 2
        assert current == await provider.read_history("i1", 2)
        assert isinstance(current[0], OrchestrationStarted)
        assert current[0].event_id == 1

    @pytest.mark.anyio
    async def test_continue_as_new_batch_runs_in_the_old_execution_until_committed(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")

        item = await continue_as_new_and_lock(provider, "i1")

        assert kinds(item.messages) == ["ContinueAsNewMessage"]
        assert item.execution_id == 1
        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.RUNNING
        assert record.execution_status is ExecutionStatus.CONTINUED_AS_NEW
        await provider.commit_turn(turn_commit(item))
        record = await provider.read_instance("i1")
        assert record is not None
        assert (record.execution_id, record.execution_status) == (2, ExecutionStatus.RUNNING)
        assert await provider.list_executions("i1") == [1, 2]

    @pytest.mark.anyio
    async def test_turns_after_continue_as_new_see_only_the_new_execution(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await next_turn(provider, "i1")
        await continue_as_new(provider, "i1")

        item = await lock_next_turn(provider, "i1", lock_timeout=self.lock_timeout)

        assert item.execution_id == 2
        assert item.instance is not None
        assert item.instance.execution_id == 2
        assert [e.event_id for e in item.history] == [1]
        assert isinstance(item.history[0], OrchestrationStarted)

    @pytest.mark.anyio
    async def test_three_executions_keep_independent_histories(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_executions(provider, "i1", 3)

        assert await provider.list_executions("i1") == [1, 2, 3]
        for execution_id in (1, 2):
            history = await provider.read_history("i1", execution_id)
            assert isinstance(history[0], OrchestrationStarted)
            assert isinstance(history[-1], ContinuedAsNew)
        assert await provider.read_history("i1") == await provider.read_history("i1", 3)
        assert len(await provider.read_history("i1", 3)) == 1

    @pytest.mark.anyio
    async def test_history_of_an_unknown_execution_is_empty(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")

        assert await provider.read_history("i1", 7) == []

    @pytest.mark.anyio
    async def test_completion_sets_terminal_state_output_and_timestamps(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")
        await clock.advance(3)

        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED, output={"ok": True})

        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.COMPLETED
        assert record.execution_status is ExecutionStatus.COMPLETED
        assert record.output == payload({"ok": True})
        assert record.error is None
        assert record.updated_at_ms == clock.now_ms()
        assert record.completed_at_ms is not None

    @pytest.mark.anyio
    async def test_failure_sets_failed_state_and_error(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1")

        await next_turn(provider, "i1", status=ExecutionStatus.FAILED, error=app_error("nope"))

        record = await provider.read_instance("i1")
        assert record is not None
        assert record.state is State.FAILED
        assert record.execution_status is ExecutionStatus.FAILED
        assert record.error == app_error("nope")
