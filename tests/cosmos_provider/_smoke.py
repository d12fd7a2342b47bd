"""Short provider and orchestration scenarios for CosmosProvider runs outside the compat layer.

Used by ``test_https.py`` (the local server over TLS) and ``test_real_account.py`` (a real
account or the official emulator). They run on the real clock and touch only instances they
create, so they are safe against a shared container.
"""

from __future__ import annotations

import uuid

import duro
from duro._history import ActivityScheduled, EventRaised
from duro.providers import ExecutionStatus, Provider
from duro.providers._types import ActivityCommit, InstanceQuery
from duro.testing._contract._fixtures import (
    activity_request,
    activity_result,
    activity_task,
    external_event,
    kv_set,
    lock_instance,
    payload,
    start_and_lock,
    turn_commit,
)
from duro.testing._contract._fixtures import (
    raw as raw_json,
)

__all__ = ["orchestration_registry", "provider_smoke", "run_orchestrations", "unique_id"]


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def provider_smoke(provider: Provider) -> None:
    """The contract's core path on one instance: start, turn, activity, event, KV, finish."""
    instance_id = unique_id("smoke")
    item = await start_and_lock(provider, instance_id)
    task = activity_task(instance_id, 1, input="ping")
    now = 1_700_000_000_000
    await provider.commit_turn(
        turn_commit(
            item,
            events=[ActivityScheduled(event_id=0, ts=0, seq=1, name=task.name)],
            activity_tasks=[task],
            kv_changes=[kv_set("k", "v", at_ms=now)],
        )
    )
    work = await provider.fetch_activity(activity_request())
    assert work is not None and work.task.instance_id == instance_id
    await provider.complete_activity(
        ActivityCommit(lock_token=work.lock_token, result=activity_result(work.task, "pong"))
    )
    await provider.enqueue_orchestrator_message(external_event(instance_id, "poke", 1))
    item = await lock_instance(provider, instance_id)
    assert len(item.messages) == 2
    await provider.commit_turn(
        turn_commit(
            item,
            events=[EventRaised(event_id=0, ts=0, name="poke", data=raw_json(1))],
            status=ExecutionStatus.COMPLETED,
            output="done",
        )
    )
    record = await provider.read_instance(instance_id)
    assert record is not None and record.execution_status is ExecutionStatus.COMPLETED
    assert record.state is duro.State.COMPLETED and record.output == payload("done")
    history = await provider.read_history(instance_id)
    assert any(isinstance(e, EventRaised) for e in history)
    entry = await provider.get_kv_value(instance_id, "k")
    assert entry is not None and entry.value == payload("v")
    page = await provider.list_instances(InstanceQuery(created_after_ms=record.created_at_ms - 1))
    assert instance_id in {r.instance_id for r in page.instances}


def orchestration_registry() -> duro.Registry:
    registry = duro.Registry()

    @registry.activity
    async def greet(ctx: duro.ActivityContext, name: str) -> str:
        return f"hello {name}"

    @registry.orchestration
    async def child(ctx: duro.OrchestrationContext, name: str) -> str:
        greeting: str = await ctx.schedule_activity(greet, name)
        return greeting.upper()

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, name: str) -> list[str]:
        ctx.kv.set("seen", name)
        first = await ctx.schedule_activity(greet, name)
        second = await ctx.schedule_sub_orchestration(child, name)  # another partition
        await ctx.schedule_timer(0.2)
        answer = await ctx.wait_for_event("answer")
        return [first, second, answer, ctx.kv.get("seen")]

    return registry


async def run_orchestrations(provider: Provider, *, count: int = 2, timeout: float = 60) -> None:
    """Orchestrations through ``duro.Runtime``/``duro.Client``: activity, sub-orchestration
    across partitions (the outbox), a timer, an external event and KV."""
    registry = orchestration_registry()
    options = duro.RuntimeOptions(shutdown_grace_period=2.0, max_sessions=0)
    ids = [unique_id("e2e") for _ in range(count)]
    async with duro.Runtime(provider, registry, options):
        client = duro.Client(provider, registry=registry)
        for instance_id in ids:
            await client.start_orchestration(instance_id, "parent", instance_id)
            await client.raise_event(instance_id, "answer", "42")  # kept until awaited
        for instance_id in ids:
            status = await client.wait_for_orchestration(instance_id, timeout=timeout)
            assert status.state is duro.State.COMPLETED, (instance_id, status.state, status.error)
            assert status.output == [
                f"hello {instance_id}",
                f"HELLO {instance_id}".upper(),  # from the child, in its own partition
                "42",
                instance_id,
            ]
