"""``each_concurrently``: a batch's independent requests in flight together, with the
results and errors a loop over them would give."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from duro_cosmos._fanout import each_concurrently

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def test_results_come_back_in_the_order_of_the_items_whatever_finishes_first() -> None:
    gates = {n: anyio.Event() for n in range(4)}

    async def call(n: int) -> int:
        await gates[n].wait()
        return n * 10

    async def open_backwards() -> None:
        for n in reversed(range(4)):
            await anyio.lowlevel.checkpoint()
            gates[n].set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_backwards)
        assert await each_concurrently(call, list(range(4))) == [0, 10, 20, 30]


async def test_calls_wait_for_each_other_only_beyond_the_limit() -> None:
    in_flight, most = 0, 0
    release = anyio.Event()

    async def call(n: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if most == 3:
            release.set()
        await release.wait()
        in_flight -= 1
        return n

    with anyio.fail_after(10):
        assert await each_concurrently(call, list(range(7)), limit=3) == list(range(7))
    assert most == 3


async def test_every_call_runs_and_the_first_failure_by_position_is_raised_plainly() -> None:
    ran: list[int] = []

    async def call(n: int) -> int:
        await anyio.sleep(0.01 * (5 - n))  # later items end first
        ran.append(n)
        if n in (1, 3):
            raise LookupError(f"item {n}")
        return n

    with pytest.raises(LookupError, match="item 1"):
        await each_concurrently(call, list(range(5)))
    assert sorted(ran) == [0, 1, 2, 3, 4]
