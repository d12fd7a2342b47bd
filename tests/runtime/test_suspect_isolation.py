"""A suspect (work delivered before without finishing) runs alone: its worker's pool takes no
new item while it runs, and takes work again as soon as it ends (``_isolation``, ``_pool``)."""

from __future__ import annotations

import anyio
import pytest

from duro._runtime._isolation import SuspectIsolation
from duro._runtime._pool import WorkPool

pytestmark = pytest.mark.anyio


async def idle(item: int) -> None:
    await anyio.lowlevel.checkpoint()


async def test_a_held_back_pool_reserves_no_slot_until_it_goes_on() -> None:
    pool = WorkPool[int](4, receives_hand_overs=True)
    stopping = anyio.Event()
    async with pool.running(idle, stopping):
        pool.hold_back()
        assert pool.try_reserve(4) == 0  # no hand-over either
        reserved: list[int] = []

        async def fetch_loop() -> None:
            reserved.append(await pool.reserve(2))

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_loop)
            await anyio.wait_all_tasks_blocked()
            assert reserved == []
            pool.go_on()
        assert reserved == [2]
        pool.release(2)
        assert pool.try_reserve(4) == 4
        pool.release(4, lent=True)
        stopping.set()


async def test_a_pool_held_back_while_the_fetch_loop_waited_for_a_slot_keeps_waiting() -> None:
    pool = WorkPool[int](1)
    stopping = anyio.Event()
    async with pool.running(idle, stopping):
        assert await pool.reserve(1) == 1  # the only slot, taken
        reserved: list[int] = []

        async def fetch_loop() -> None:
            reserved.append(await pool.reserve(1))

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_loop)
            await anyio.wait_all_tasks_blocked()
            pool.hold_back()
            pool.release(1)  # the slot comes free while the pool is held back
            await anyio.wait_all_tasks_blocked()
            assert reserved == []
            pool.go_on()
        assert reserved == [1]
        pool.release(1)
        stopping.set()


async def test_a_suspect_holds_its_workers_pool_back_until_it_is_done() -> None:
    pool = WorkPool[int](4, receives_hand_overs=True)
    isolation = SuspectIsolation(pool)
    stopping = anyio.Event()
    async with pool.running(idle, stopping):
        assert isolation.admit(suspect=False)  # an ordinary item changes nothing
        assert pool.try_reserve(1) == 1
        pool.release(1, lent=True)
        assert isolation.admit(suspect=True)
        assert pool.try_reserve(1) == 0
        assert not isolation.admit(suspect=False)  # its batch-mates go back
        isolation.done(suspect=True)
        assert pool.try_reserve(1) == 1
        pool.release(1, lent=True)
        stopping.set()
