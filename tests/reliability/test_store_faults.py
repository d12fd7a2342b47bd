"""The runtime against a store that fails: ``FaultyProvider`` around real providers.

The mixed workload runs while the store refuses calls (retryable and permanent), answers
late, stalls, and applies writes whose responses are then lost. The runtime must retry what is
retryable, never commit half a turn, and carry on once the store recovers: every instance
completes with its output, no history has a gap or a duplicate, no activity runs after its
result was committed, and no queue keeps a message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import duro
from duro.providers import Provider
from duro.testing import Fault, FaultKind, FaultyProvider, InjectedFault

from . import workload
from .checks import check

pytestmark = pytest.mark.anyio

WORKLOAD_SIZE = 36
"""Four of each orchestration kind."""


@pytest.fixture(params=["memory", "sqlite"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Provider]:
    provider: Provider = (
        duro.InMemoryProvider()
        if request.param == "memory"
        else duro.SqliteProvider(tmp_path / "faults.db")
    )
    async with provider:
        yield provider


def _options(worker_id: str = "faulty-1") -> duro.RuntimeOptions:
    return duro.RuntimeOptions(
        orchestration_concurrency=4,
        activity_concurrency=8,
        poll_timeout=0.1,
        idle_backoff_max=0.05,
        # Short locks: lost fetch responses leave locks nobody uses until they expire.
        orchestration_lock_timeout=1.0,
        activity_lock_timeout=1.0,
        shutdown_grace_period=2.0,
        worker_id=worker_id,
    )


async def _start_all(client: duro.Client, instances: list[workload.Instance]) -> None:
    """Start every instance, trying again after injected (or real) retryable errors."""
    for instance in instances:
        for _ in range(50):
            try:
                await workload.start(client, instance)
                break
            except duro.ProviderError as exc:
                if not exc.retryable:
                    raise
                await anyio.sleep(0.01)
        else:
            pytest.fail(f"could not start {instance.instance_id}")


async def _wait_all(client: duro.Client, instances: list[workload.Instance]) -> None:
    with anyio.fail_after(120):
        for instance in instances:
            await client.wait_for_orchestration(instance.instance_id)


async def test_the_mixed_workload_survives_a_store_that_fails_in_every_way(
    inner: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workload, "run_log", workload.RunLog(str(tmp_path / "runs.jsonl")))
    store = FaultyProvider(inner, seed=12)
    store.inject(Fault.latency(0.002), probability=0.3)
    store.inject(Fault.retryable(), probability=0.05)
    store.inject(Fault.permanent(), "commit_turns", "complete_activities", probability=0.1)
    store.inject(
        Fault.lost_response(),
        "commit_turns", "complete_activities", "fetch_turns", "fetch_activities",
        "abandon_turn", "abandon_activity", "renew_activity_lock",
        probability=0.04,
    )  # fmt: skip
    instances = workload.instances(WORKLOAD_SIZE, prefix="faults")
    client = duro.Client(store, registry=workload.registry)

    async with duro.Runtime(store, workload.registry, _options()):
        await _start_all(client, instances)
        await _wait_all(client, instances)

    kinds = {kind for (_, kind) in store.injected}
    assert {FaultKind.RETRYABLE, FaultKind.PERMANENT, FaultKind.LOST_RESPONSE} <= kinds
    store.clear()
    findings = await check(client, instances, [tmp_path / "runs.jsonl"])
    assert findings.clean, findings.summary()


async def test_work_resumes_when_a_stalled_store_comes_back(
    inner: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workload, "run_log", workload.RunLog(str(tmp_path / "runs.jsonl")))
    store = FaultyProvider(inner)
    instances = workload.instances(18, prefix="stall")
    client = duro.Client(store, registry=workload.registry)
    async with duro.Runtime(store, workload.registry, _options()):
        await _start_all(client, instances[:9])
        store.inject(Fault.stall())  # every call now hangs, the runtime's and the client's
        await anyio.sleep(1.5)  # past every lock: nothing may be lost for it
        store.resume()
        store.clear()
        await _start_all(client, instances[9:])
        await _wait_all(client, instances)

    findings = await check(client, instances, [tmp_path / "runs.jsonl"])
    assert findings.clean, findings.summary()


async def test_a_store_that_refuses_everything_for_a_while_loses_nothing(
    inner: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workload, "run_log", workload.RunLog(str(tmp_path / "runs.jsonl")))
    store = FaultyProvider(inner)
    instances = workload.instances(18, prefix="down")
    client = duro.Client(store, registry=workload.registry)
    async with duro.Runtime(store, workload.registry, _options()):
        await _start_all(client, instances)
        store.inject(Fault.retryable())  # the store is down
        await anyio.sleep(1.5)
        store.clear()
        await _wait_all(client, instances)

    findings = await check(client, instances, [tmp_path / "runs.jsonl"])
    assert findings.clean, findings.summary()


# -- the wrapper itself ------------------------------------------------------------------------


async def test_injected_failures_follow_their_rules(inner: Provider) -> None:
    store = FaultyProvider(inner, seed=1)
    store.inject(Fault.retryable(), "queue_depths", times=2)
    store.inject(Fault.permanent(), "read_instance")

    for _ in range(2):
        with pytest.raises(InjectedFault) as retryable:
            await store.queue_depths()
        assert retryable.value.retryable
    await store.queue_depths()  # the rule ran out
    with pytest.raises(InjectedFault) as permanent:
        await store.read_instance("x")
    assert not permanent.value.retryable
    assert store.injected[("queue_depths", FaultKind.RETRYABLE)] == 2


async def test_a_lost_response_applies_the_write(inner: Provider) -> None:
    store = FaultyProvider(inner)
    client = duro.Client(store, registry=workload.registry)
    store.inject(Fault.lost_response(), "start_orchestration", times=1)

    with pytest.raises(InjectedFault):
        await client.start_orchestration("lost-1", "chain", 1)

    assert (await client.get_status("lost-1")).state is duro.State.PENDING
    with pytest.raises(duro.InstanceAlreadyExistsError):
        await client.start_orchestration("lost-1", "chain", 1)


async def test_a_stalled_call_waits_for_resume(inner: Provider) -> None:
    store = FaultyProvider(inner)
    store.inject(Fault.stall(), "queue_depths")
    done = anyio.Event()

    async def call() -> None:
        await store.queue_depths()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await anyio.sleep(0.05)
        assert not done.is_set()
        store.resume()
        with anyio.fail_after(5):
            await done.wait()


def test_rules_name_real_operations_and_sane_odds() -> None:
    store = FaultyProvider(duro.InMemoryProvider())
    with pytest.raises(ValueError, match="commit_turn_typo"):
        store.inject(Fault.retryable(), "commit_turn_typo")
    with pytest.raises(ValueError, match="probability"):
        store.inject(Fault.retryable(), probability=1.5)
    with pytest.raises(ValueError, match="latency"):
        Fault.latency(float("nan"))
