"""CosmosProvider behaviour beyond the shared contract: request costs, the outbox, faults."""

from __future__ import annotations

import base64
import dataclasses

import anyio
import httpx
import msgspec
import pytest

from duro._errors import InstanceAlreadyExistsError, ProviderError
from duro._history import EventRaised
from duro._messages import ActivityResultMessage
from duro._status import ExecutionStatus
from duro.providers._types import ActivityCommit, RenewRequest, ScheduledMessage
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import (
    activity_request,
    activity_result,
    activity_task,
    create_instance,
    lock_next_turn,
    start_and_lock,
    start_message,
    turn_commit,
    turn_request,
)
from duro.testing._contract._helpers import timer
from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy, TurnTooLargeError
from tests.cosmos.support import CosmosTestEnv

pytestmark = pytest.mark.anyio

FAST_RETRY = HttpRetryPolicy(base_delay=0.001, max_delay=0.01)


def make(env: CosmosTestEnv, clock: VirtualClock, **kwargs: object) -> CosmosProvider:
    config = CosmosConfig(env.url, env.key, env.database, env.container)
    return CosmosProvider(config, transport=env.transport, clock=clock, **kwargs)  # type: ignore[arg-type]


def requests(env: CosmosTestEnv) -> list[str]:
    out = []
    for entry in env.log.entries:
        pk = f" [{entry.info.partition_key}]" if entry.info.partition_key is not None else ""
        out.append(f"{entry.info.kind}{pk}")
    return out


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


async def test_one_turn_and_one_activity_cost_a_fixed_number_of_requests(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await create_instance(provider, "warm-up")  # bootstrap, membership, first sweep
        await create_instance(provider, "i1")
        task = activity_task("i1", 1)
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=ActivityResultMessage(instance_id="i1", execution_id=1, seq=0))
        )
        cosmos_env.log.clear()

        item = await provider.fetch_turn(turn_request())
        assert item is not None and item.instance_id == "i1"
        fetch_cost = requests(cosmos_env)
        cosmos_env.log.clear()
        await provider.commit_turn(
            turn_commit(
                item, events=[EventRaised(event_id=0, ts=0, name="x")], activity_tasks=[task]
            )
        )
        commit_cost = requests(cosmos_env)
        cosmos_env.log.clear()
        work = await provider.fetch_activity(activity_request())
        assert work is not None
        fetch_activity_cost = requests(cosmos_env)
        cosmos_env.log.clear()
        await provider.complete_activity(
            ActivityCommit(
                lock_token=work.lock_token,
                result=ScheduledMessage(
                    message=ActivityResultMessage(instance_id="i1", execution_id=1, seq=1)
                ),
            )
        )
        complete_cost = requests(cosmos_env)

    print("fetch_turn:", fetch_cost)
    print("commit_turn:", commit_cost)
    print("fetch_activity:", fetch_activity_cost)
    print("complete_activity:", complete_cost)
    # The provider wrote the message and the work item itself, into a slot only it serves:
    # no query finds them (the in-process index does) and no write locks them (nobody else
    # is offered them; the commit's If-Match still refuses an overtaken turn).
    # fetch_turn: the partition's documents, the current history.
    assert fetch_cost == ["query [i1]", "query [i1]"]
    assert commit_cost == ["batch [i1]"]
    assert fetch_activity_cost == []
    assert complete_cost == ["batch [i1]"]


async def test_outbox_intent_left_by_a_crash_is_delivered_once_by_the_reconciler(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        parent = await start_and_lock(provider, "parent")
        # The child's partition refuses writes: delivery after the commit fails, as if the
        # committer had died right after its batch.
        cosmos_env.faults.add(partition_key="child", kind=("batch", "create"), status=403, times=1)
        await provider.commit_turn(
            turn_commit(
                parent, orchestrator_messages=[ScheduledMessage(message=start_message("child"))]
            )
        )
        assert await provider.read_instance("child") is None

        assert await provider.reconcile_outbox() == 1
        assert await provider.reconcile_outbox() == 0

        record = await provider.read_instance("child")
        assert record is not None and record.state.value == "pending"
        item = await provider.fetch_turn(turn_request())
        assert item is not None and item.instance_id == "child"
        assert [type(m).__name__ for m in item.messages] == ["StartOrchestrationMessage"]


async def test_redelivering_a_delivered_intent_changes_nothing(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await create_instance(provider, "target")
        sender = await start_and_lock(provider, "sender")
        # The intent's deletion is lost after the message went out: the reconciler repeats
        # the delivery, which must not queue the message twice.
        cosmos_env.faults.add(kind="delete", partition_key="sender", status=403, times=1)
        await provider.commit_turn(
            turn_commit(
                sender,
                orchestrator_messages=[
                    ScheduledMessage(
                        message=ActivityResultMessage(instance_id="target", execution_id=1, seq=7)
                    )
                ],
            )
        )
        assert await provider.reconcile_outbox() == 1
        item = await provider.fetch_turn(turn_request())
        assert item is not None and item.instance_id == "target"
        assert len(item.messages) == 1


async def test_lost_batch_response_is_resolved_by_rereading_not_by_repeating(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        item = await start_and_lock(provider, "i1")
        cosmos_env.faults.add(kind="batch", partition_key="i1", lose_response=httpx.ReadTimeout)
        cosmos_env.log.clear()
        await provider.commit_turn(turn_commit(item, activity_tasks=[activity_task("i1", 1)]))
        # one batch (applied, answer lost), then a read that finds the commit id: no resend
        assert requests(cosmos_env) == ["batch [i1]", "read [i1]"]

        assert len(await provider.read_history("i1")) == 1
        assert await provider.fetch_activity(activity_request()) is not None
        assert await provider.fetch_activity(activity_request()) is None


async def test_lost_start_and_enqueue_responses_apply_exactly_once(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await provider.open()
        cosmos_env.faults.add(kind="batch", partition_key="i1", lose_response=httpx.ReadTimeout)
        await provider.start_orchestration(start_message("i1"))
        with pytest.raises(InstanceAlreadyExistsError):
            await provider.start_orchestration(start_message("i1"))
        item = await provider.fetch_turn(turn_request())
        assert item is not None
        await provider.commit_turn(turn_commit(item))

        cosmos_env.faults.add(kind="create", partition_key="i1", lose_response=httpx.ReadTimeout)
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=ActivityResultMessage(instance_id="i1", execution_id=1, seq=3))
        )
        item = await provider.fetch_turn(turn_request())
        assert item is not None and len(item.messages) == 1


async def test_lost_activity_completion_response_is_resolved(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        task = activity_task("i1", 1)
        await create_instance(provider, "i1", activity_tasks=[task])
        work = await provider.fetch_activity(activity_request())
        assert work is not None
        cosmos_env.faults.add(kind="batch", partition_key="i1", lose_response=httpx.ReadTimeout)
        result = ScheduledMessage(
            message=ActivityResultMessage(instance_id="i1", execution_id=1, seq=1)
        )
        await provider.complete_activity(ActivityCommit(lock_token=work.lock_token, result=result))

        item = await provider.fetch_turn(turn_request())
        assert item is not None and item.messages == [result.message]


# A request that times out before it reaches the server looks, to the client, exactly like
# a lost response: the provider must re-read, then send it again, never give up half-applied.
NOT_SENT = httpx.ReadTimeout


async def test_a_start_delivered_through_the_outbox_survives_batches_that_never_arrived(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    # Found by the fault workload: the child's instance document was never created, its
    # start message was, and the parent waited forever.
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await provider.open()
        cosmos_env.faults.add(kind="batch", partition_key="child", error=NOT_SENT, times=2)
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=start_message("child"))
        )
        assert await provider.read_instance("child") is not None
        item = await provider.fetch_turn(turn_request())
        assert item is not None and item.instance_id == "child" and len(item.messages) == 1


async def test_a_start_whose_every_attempt_is_lost_fails_loudly_and_writes_nothing(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await provider.open()
        cosmos_env.faults.add(kind="batch", partition_key="i1", error=NOT_SENT, times=2)
        await provider.start_orchestration(start_message("i1"))  # two attempts lost, third lands
        assert await provider.read_instance("i1") is not None

        cosmos_env.faults.add(kind="batch", partition_key="i2", error=NOT_SENT, times=None)
        with pytest.raises(ProviderError, match="may or may not have been applied"):
            await provider.start_orchestration(start_message("i2"))
        with pytest.raises(ProviderError, match="may or may not have been applied"):
            await provider.enqueue_orchestrator_message(
                ScheduledMessage(message=start_message("i2"))
            )
        cosmos_env.faults.clear()
        assert await provider.read_instance("i2") is None
        assert await provider.fetch_turn(turn_request()) is not None  # i1's start
        assert await provider.fetch_turn(turn_request()) is None  # nothing half-written for i2


async def test_a_commit_resent_after_a_lost_attempt_is_itself_resolved_when_its_answer_is_lost(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        item = await start_and_lock(provider, "i1")
        cosmos_env.faults.add(kind="batch", partition_key="i1", error=NOT_SENT, times=1)
        cosmos_env.faults.add(kind="batch", partition_key="i1", lose_response=httpx.ReadTimeout)
        cosmos_env.log.clear()
        await provider.commit_turn(turn_commit(item, activity_tasks=[activity_task("i1", 1)]))
        assert requests(cosmos_env) == ["batch [i1]", "read [i1]", "batch [i1]", "read [i1]"]
        assert len(await provider.read_history("i1")) == 1
        assert await provider.fetch_activity(activity_request()) is not None


async def test_an_activity_lock_renewal_whose_answer_was_lost_keeps_the_lock(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await create_instance(provider, "i1", activity_tasks=[activity_task("i1", 1)])
        work = await provider.fetch_activity(activity_request())
        assert work is not None
        # Applied, answer lost; the client's retry of the If-Match replace then gets 412.
        cosmos_env.faults.add(kind="replace", partition_key="i1", lose_response=httpx.ReadTimeout)
        await provider.renew_activity_lock(RenewRequest(lock_token=work.lock_token, extend_for=30))
        result = ScheduledMessage(
            message=ActivityResultMessage(instance_id="i1", execution_id=1, seq=1)
        )
        await provider.complete_activity(ActivityCommit(lock_token=work.lock_token, result=result))
        item = await provider.fetch_turn(turn_request())
        assert item is not None and item.messages == [result.message]


async def test_throttling_and_unavailability_are_retried_to_completion(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await provider.open()
        cosmos_env.faults.add(kind="batch", status=429, retry_after_ms=5, times=3)
        cosmos_env.faults.add(kind="query", status=503, times=3)
        cosmos_env.faults.add(kind="upsert", status=449, times=1)  # a membership heartbeat
        cosmos_env.faults.add(kind="read", status=408, times=1)
        await create_instance(provider, "i1", activity_tasks=[activity_task("i1", 1)])
        work = await provider.fetch_activity(activity_request())
        assert work is not None
        await provider.complete_activity(ActivityCommit(lock_token=work.lock_token, result=None))
        assert await provider.read_instance("i1") is not None
        stats = provider.statistics()
        assert stats.throttled >= 3
        assert stats.retries >= 8


async def test_turn_over_two_megabytes_is_refused_and_keeps_the_lock(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        item = await start_and_lock(provider, "i1")
        big = msgspec.Raw(msgspec.json.encode("x" * (1024 * 1024)))
        huge = turn_commit(
            item, events=[EventRaised(event_id=0, ts=0, name=f"e{n}", data=big) for n in range(3)]
        )
        with pytest.raises(TurnTooLargeError) as info:
            await provider.commit_turn(huge)
        assert info.value.retryable is False
        await provider.commit_turn(turn_commit(item))  # the lock survived
        assert len(await provider.read_history("i1")) == 1


async def test_wide_fan_out_overflows_into_the_outbox_and_arrives_whole(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        item = await start_and_lock(provider, "i1")
        tasks = [activity_task("i1", seq) for seq in range(1, 151)]
        await provider.commit_turn(turn_commit(item, activity_tasks=tasks))

        fetched = []
        while batch := await provider.fetch_activities(
            dataclasses.replace(activity_request(), max_items=50)
        ):
            fetched.extend(batch)
        assert sorted(w.task.seq for w in fetched) == list(range(1, 151))


async def test_key_never_appears_in_reprs_or_errors(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    wrong_key = base64.b64encode(b"not the key of this account, 64 bytes long......").decode()
    config = CosmosConfig(cosmos_env.url, wrong_key, cosmos_env.database, cosmos_env.container)
    provider = CosmosProvider(config, transport=cosmos_env.transport, clock=clock, retry=FAST_RETRY)
    assert wrong_key not in repr(provider)
    assert wrong_key not in repr(config) and wrong_key not in str(config)
    with pytest.raises(ProviderError) as info:
        await provider.start_orchestration(start_message("i1"))
    await provider.close()
    assert info.value.retryable is False
    assert wrong_key not in str(info.value) and wrong_key not in repr(info.value)
    assert cosmos_env.key not in str(info.value)


async def test_construction_does_no_io_and_close_releases_the_client(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    provider = make(cosmos_env, clock)
    assert cosmos_env.log.entries == []
    async with provider:
        await provider.start_orchestration(start_message("i1"))
    assert cosmos_env.log.count("database") >= 1
    async with provider:  # reopens lazily
        assert await provider.read_instance("i1") is not None


async def test_an_ending_turn_drops_its_pending_timers_in_its_own_batch(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    # Found by the soak test: deleted after the commit, a losing timeout outlived a process
    # killed in between, queued for the hour until it fell due. No delete of that partition
    # may succeed here, as none would from a process that died after its commit.
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await create_instance(provider, "i1")
        pending = [timer("i1", seq, clock.now_ms() + 3_600_000) for seq in (1, 2)]
        for message in pending:
            await provider.enqueue_orchestrator_message(message)
        item = await lock_next_turn(provider, "i1")
        cosmos_env.faults.add(kind="delete", partition_key="i1", status=503, times=None)

        await provider.commit_turn(turn_commit(item, status=ExecutionStatus.COMPLETED))

        assert (await provider.queue_depths()).timers == 0


async def test_an_ending_turn_whose_pending_timer_is_gone_already_still_commits(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    async with make(cosmos_env, clock, retry=FAST_RETRY) as provider:
        await create_instance(provider, "i1")
        for seq in (1, 2):
            await provider.enqueue_orchestrator_message(timer("i1", seq, clock.now_ms() + 60_000))
        item = await lock_next_turn(provider, "i1")
        gone = provider._ctx.turn_locks[item.lock_token].later_timers[0]
        await provider._ctx.store.delete(gone, "i1")  # as a purge of that message would

        await provider.commit_turn(turn_commit(item, status=ExecutionStatus.COMPLETED))

        assert (await provider.queue_depths()).timers == 0
        record = await provider.read_instance("i1")
        assert record is not None and record.execution_status is ExecutionStatus.COMPLETED


class _HoldBatches(httpx.AsyncBaseTransport):
    """Holds the next transactional batch request until released (an interleaving, exactly)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.armed = False
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.armed and request.headers.get("x-ms-cosmos-is-batch-request") == "True":
            self.armed = False
            self.reached.set()
            await self.release.wait()
        return await self.inner.handle_async_request(request)


async def test_a_commit_overtaken_by_its_own_lock_renewal_commits_on_the_renewed_lock(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    # Found by the Cosmos soak: turns ran twice in one process, no kill behind them. A turn that
    # runs long has its lock renewed from the runtime's lease task; a renewal that lands while
    # the turn's commit is on its way changes the instance document, and the commit's If-Match
    # then failed as if another member had taken the lock: the turn was void and ran again.
    gate = _HoldBatches(cosmos_env.transport)
    config = CosmosConfig(cosmos_env.url, cosmos_env.key, cosmos_env.database, cosmos_env.container)
    async with CosmosProvider(config, transport=gate, clock=clock, retry=FAST_RETRY) as provider:
        await create_instance(provider, "i1")
        item = await lock_next_turn(provider, "i1")
        gate.armed = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(provider.commit_turn, turn_commit(item, status=ExecutionStatus.COMPLETED))
            await gate.reached.wait()
            await provider.renew_turn_lock(RenewRequest(lock_token=item.lock_token, extend_for=30))
            gate.release.set()

        record = await provider.read_instance("i1")
        assert record is not None and record.execution_status is ExecutionStatus.COMPLETED
        assert await provider.fetch_turn(turn_request()) is None


async def test_a_completion_overtaken_by_its_own_lock_renewal_completes_on_the_renewed_lock(
    cosmos_env: CosmosTestEnv, clock: VirtualClock
) -> None:
    # The same race for an activity: its lock is renewed every third of the lock timeout
    # while it runs, and a renewal that landed while the completion was on its way failed the
    # completion as if the item had been taken over: a finished result thrown away.
    gate = _HoldBatches(cosmos_env.transport)
    config = CosmosConfig(cosmos_env.url, cosmos_env.key, cosmos_env.database, cosmos_env.container)
    async with CosmosProvider(config, transport=gate, clock=clock, retry=FAST_RETRY) as provider:
        task = activity_task("i1", 1)
        await create_instance(provider, "i1", activity_tasks=[task])
        work = await provider.fetch_activity(activity_request())
        assert work is not None
        gate.armed = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                provider.complete_activity,
                ActivityCommit(lock_token=work.lock_token, result=activity_result(task)),
            )
            await gate.reached.wait()
            await provider.renew_activity_lock(
                RenewRequest(lock_token=work.lock_token, extend_for=30)
            )
            gate.release.set()

        assert await provider.fetch_activity(activity_request()) is None
        item = await provider.fetch_turn(turn_request())
        assert item is not None
        assert [type(m).__name__ for m in item.messages] == ["ActivityResultMessage"]
