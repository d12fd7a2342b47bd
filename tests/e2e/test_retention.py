"""Bulk retention (``delete_instances``, ``prune_executions_all``), instance trees and
``list_executions``, end to end."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

import duro
from duro.providers import DeleteResult, Provider, PruneResult
from duro.testing import VirtualClock

from ._support import completed, failed, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.orchestration
    async def quick(ctx: duro.OrchestrationContext, n: int) -> int:
        return n

    @registry.orchestration
    async def boom(ctx: duro.OrchestrationContext, _: None) -> None:
        raise RuntimeError("boom")

    @registry.orchestration
    async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
        return await ctx.wait_for_event("go")

    @registry.orchestration
    async def family(ctx: duro.OrchestrationContext, depth: int) -> int:
        if depth == 0:
            return 1
        children = [
            ctx.schedule_sub_orchestration(
                "family", depth - 1, instance_id=f"{ctx.instance_id}.{i}"
            )
            for i in range(2)
        ]
        return 1 + sum(await ctx.join(children))

    @registry.orchestration
    async def parent_of_waiter(ctx: duro.OrchestrationContext, _: None) -> None:
        ctx.start_orchestration("waiter", instance_id=f"{ctx.instance_id}-detached")
        await ctx.schedule_sub_orchestration("quick", 1, instance_id=f"{ctx.instance_id}-child")

    @registry.orchestration
    async def counter(ctx: duro.OrchestrationContext, n: int) -> int:
        ctx.kv.set("n", n)
        if n < 3:
            ctx.continue_as_new(n + 1)
        return n


async def _state(client: duro.Client, instance_id: str) -> duro.State:
    return (await client.get_status(instance_id)).state


async def test_delete_instances_removes_finished_trees_and_leaves_running_ones(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    seen: list[tuple[str, DeleteResult | None]] = []
    async with runtime(store, registry, clock):
        for i in range(3):
            await client.start_orchestration(f"q-{i}", "quick", i)
        await client.start_orchestration("b-0", "boom")
        await client.start_orchestration("w-0", "waiter")
        await client.start_orchestration("tree", "family", 1)
        for instance_id in ("q-0", "q-1", "q-2", "tree"):
            await completed(client, instance_id)
        await failed(client, "b-0")
        await wait_until(lambda: _is(client, "w-0", duro.State.RUNNING), what="w-0 runs")

        deleted = await client.delete_instances(
            on_progress=lambda instance_id, result: seen.append((instance_id, result))
        )

        assert deleted == 7  # q-0..2, b-0, and the tree of three
        assert await _state(client, "w-0") is duro.State.RUNNING
        for gone in ("q-0", "q-1", "q-2", "b-0", "tree", "tree.0", "tree.1"):
            assert await _state(client, gone) is duro.State.NOT_FOUND
        await client.raise_event("w-0", "go", 1)
        assert await completed(client, "w-0") == 1
    assert sum(r.instances_deleted for _, r in seen if r is not None) == 7
    assert {i for i, _ in seen} >= {"q-0", "q-1", "q-2", "b-0", "tree"}


async def _is(client: duro.Client, instance_id: str, state: duro.State) -> bool:
    return await _state(client, instance_id) is state


async def test_delete_instances_filters_by_state_name_completion_and_limit(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("old-1", "quick", 1)
        await client.start_orchestration("old-2", "boom")
        await completed(client, "old-1")
        await failed(client, "old-2")
        await clock.advance(60)
        cutoff = datetime.fromtimestamp(clock.now_ms() / 1000, UTC)
        for i in range(3):
            await client.start_orchestration(f"new-{i}", "quick", i)
            await completed(client, f"new-{i}")

        assert await client.delete_instances(states={duro.State.FAILED}) == 1
        assert await client.delete_instances(completed_before=cutoff) == 1
        assert await _state(client, "old-1") is duro.State.NOT_FOUND
        assert await client.delete_instances(name="quick", limit=2) == 2
        remaining = await client.list_instances()
        assert len(remaining) == 1
        with pytest.raises(ValueError, match="finished instances only"):
            await client.delete_instances(states={duro.State.RUNNING})


async def test_delete_instances_is_safe_while_a_runtime_works(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    deleted = 0
    async with runtime(store, registry, clock):
        await client.start_orchestration("keep", "waiter")

        async def produce() -> None:
            for i in range(12):
                await client.start_orchestration(f"churn-{i}", "quick", i)
                await anyio.sleep(0.005)

        async def sweep() -> None:
            nonlocal deleted
            for _ in range(6):
                deleted += await client.delete_instances(page_size=3)
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            tg.start_soon(sweep)
        for i in range(12):  # each either finished and then deleted, or finished and still here
            status = await client.get_status(f"churn-{i}")
            if status.state is not duro.State.NOT_FOUND:
                assert (await client.wait_for_orchestration(f"churn-{i}")).output == i
        deleted += await client.delete_instances()
        assert deleted == 12
        assert await _state(client, "keep") is duro.State.RUNNING


async def test_prune_executions_all_trims_every_continued_instance(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    pruned: list[tuple[str, PruneResult]] = []
    async with runtime(store, registry, clock):
        for instance_id in ("c-1", "c-2"):
            await client.start_orchestration(instance_id, "counter", 0)
            assert await completed(client, instance_id) == 3
        await client.start_orchestration("single", "quick", 1)
        await completed(client, "single")

    total = await client.prune_executions_all(
        keep=2, on_progress=lambda instance_id, result: pruned.append((instance_id, result))
    )

    assert (total.executions_deleted, total.events_deleted > 0) == (4, True)
    assert sorted(i for i, _ in pruned) == ["c-1", "c-2"]
    for instance_id in ("c-1", "c-2"):
        assert [e.execution_id for e in await client.list_executions(instance_id)] == [3, 4]
        assert await client.get_value(instance_id, "n") == 3
    assert (await client.prune_executions_all()).executions_deleted == 2
    with pytest.raises(ValueError, match="keep"):
        await client.prune_executions_all(keep=0)


async def test_instance_tree_and_list_executions(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("fam", "family", 2)
        assert await completed(client, "fam") == 7
        await client.start_orchestration("pw", "parent_of_waiter")
        await completed(client, "pw")
        await client.start_orchestration("cnt", "counter", 1)
        await completed(client, "cnt")

    tree = await client.get_instance_tree("fam")
    assert [s.instance_id for s in tree.walk()] == [
        "fam", "fam.0", "fam.0.0", "fam.0.1", "fam.1", "fam.1.0", "fam.1.1",
    ]  # fmt: skip
    assert {s.state for s in tree.walk()} == {duro.State.COMPLETED}
    assert [len(c.children) for c in tree.children] == [2, 2]
    detached = await client.get_instance_tree("pw")
    assert [c.status.instance_id for c in detached.children] == ["pw-child"]  # no parent link
    with pytest.raises(duro.InstanceNotFoundError):
        await client.get_instance_tree("nobody")

    executions = await client.list_executions("cnt")
    assert [(e.execution_id, e.status) for e in executions] == [
        (1, duro.ExecutionStatus.CONTINUED_AS_NEW),
        (2, duro.ExecutionStatus.CONTINUED_AS_NEW),
        (3, duro.ExecutionStatus.COMPLETED),
    ]
    assert all(e.completed_at is not None and e.event_count > 0 for e in executions)
    with pytest.raises(duro.InstanceNotFoundError):
        await client.list_executions("nobody")
