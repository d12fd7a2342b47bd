"""How often a client wait reads the store when nothing wakes it (a runtime in another process
on a store without notices, such as Cosmos DB, where every read is billed)."""

from __future__ import annotations

import time

import pytest

import duro
from duro._client_reads import _next_poll
from duro.providers import InstanceRecord


def test_polls_double_to_50_ms_then_slow_to_a_tenth_of_the_wait_up_to_a_second() -> None:
    now = time.monotonic()
    assert _next_poll(0.005, now - 100) == 0.01  # the first polls double whatever the wait
    assert _next_poll(0.04, now) == 0.05
    assert _next_poll(0.05, now) == 0.05  # a short wait polls every 50 ms
    assert _next_poll(0.05, now - 5.0) == pytest.approx(0.5, rel=0.01)
    assert _next_poll(0.5, now - 100) == 1.0


class CountingReads(duro.InMemoryProvider):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        self.reads += 1
        return await super().read_instance(instance_id)


@pytest.mark.anyio
async def test_a_two_second_wait_nothing_wakes_reads_the_store_about_30_times_not_40() -> None:
    store = CountingReads()
    client = duro.Client(store)
    await client.start_orchestration("never-runs", "nobody-runs-it")
    store.reads = 0

    with pytest.raises(duro.WaitTimeoutError):
        await client.wait_for_orchestration("never-runs", timeout=2.0)

    # 5, 10, 20, 40 ms, 50 ms up to half a second, then 10 % of the time waited: 29 reads
    # at most (a slow machine only waits longer). Every 50 ms throughout would be 43.
    assert store.reads <= 30, store.reads
